"""Storage commands: `mimetic sink`, `mimetic jobs rollup|retention`, `mimetic roles ...`,
`mimetic bench storage`, `mimetic bench sink`. Hooked in with `register(app, bench_app)`."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

jobs_app = typer.Typer(help="Scheduled database jobs (rollups, retention).", no_args_is_help=True)
roles_app = typer.Typer(help="Database login roles (passwords kept in $MIMETIC_HOME/secrets/).",
                        no_args_is_help=True)


def _print(obj) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))


def sink_cmd(
    admin_port: Annotated[int | None, typer.Option(
        "--admin-port", help="Override MIMETIC_SINK_ADMIN_PORT (/livez /readyz /metrics; 0: off)")] = None,
) -> None:
    """Run the database sink (derived topics -> TimescaleDB) until SIGINT/SIGTERM."""
    import asyncio
    import logging

    from mimetic.config import get_settings
    from processors.sink import run_sink

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    s = get_settings()
    if admin_port is not None:
        s = s.model_copy(update={"sink_admin_port": admin_port})
    asyncio.run(run_sink(s))


@jobs_app.command("rollup")
def rollup_cmd(
    since: Annotated[datetime | None, typer.Option("--since", help="Re-roll from this time (ignores the watermark)")] = None,
    upto: Annotated[datetime | None, typer.Option("--upto", help="Roll up to this time (default now - lateness)")] = None,
) -> None:
    """Roll envelopes up per minute and activations/balance per session and muscle (idempotent)."""
    from mimetic.config import get_settings
    from processors.storage.jobs import run_rollup

    _print(run_rollup(get_settings(), since=since, upto=upto))


@jobs_app.command("retention")
def retention_cmd() -> None:
    """Drop hypertable chunks older than the configured ages (MIMETIC_RETENTION_*_DAYS)."""
    from mimetic.config import get_settings
    from processors.storage.jobs import run_retention

    _print(run_retention(get_settings()))


@roles_app.command("create")
def roles_create(
    name: Annotated[str, typer.Argument(help="Login role name (lower case, digits, _)")],
    group: Annotated[str, typer.Option("--group",
                                       help="ingest | gateway | clinic | researcher | operator")],
    clinic: Annotated[str | None, typer.Option("--clinic", help="Clinic id (clinic logins only)")] = None,
    rotate: Annotated[bool, typer.Option("--rotate",
                                         help="The role exists: give it a new password")] = False,
) -> None:
    """Create a login role (an existing one only with --rotate; never the owner or admin);
    prints where its password is stored (never the password)."""
    from mimetic.config import get_settings
    from processors.storage.roles import RoleRefused, create_login

    try:
        path = create_login(get_settings(), name, group, clinic_id=clinic, rotate=rotate)
    except (RoleRefused, ValueError) as exc:
        typer.echo(f"refused: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{name}: member of mimetic_{group}; password in {path}")


@roles_app.command("list")
def roles_list() -> None:
    """Login roles of the group roles, with their clinic."""
    from mimetic.config import get_settings
    from processors.storage.roles import list_logins

    for login, group, clinic in list_logins(get_settings()):
        typer.echo(f"{login}\t{group}\t{clinic or ''}")


@roles_app.command("drop")
def roles_drop(name: Annotated[str, typer.Argument(help="Login role to drop")]) -> None:
    """Drop a login role and its password file."""
    from mimetic.config import get_settings
    from processors.storage.roles import drop_login

    drop_login(get_settings(), name)
    typer.echo(f"{name}: dropped")


def bench_storage_cmd(
    devices: Annotated[int, typer.Option("--devices")] = 100,
    seconds: Annotated[float, typer.Option("--seconds", help="Seconds of data")] = 10.0,
    samples: Annotated[int, typer.Option("--samples", help="Envelope samples per channel per frame")] = 2,
    out: Annotated[Path | None, typer.Option("--out", help="Also write the JSON here")] = None,
) -> None:
    """Envelope layouts (per frame 2-D vs per channel 1-D): COPY + ON CONFLICT rows/s and size."""
    from mimetic.config import get_settings
    from processors.storage.bench import bench_envelope_layouts

    result = bench_envelope_layouts(get_settings(), devices=devices, seconds=seconds, samples=samples)
    _print(result)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2, default=str) + "\n")


def bench_sink_cmd(
    devices: Annotated[int, typer.Option("--devices")] = 100,
    seconds: Annotated[float, typer.Option("--seconds", help="Seconds of data")] = 10.0,
    out: Annotated[Path | None, typer.Option("--out", help="Also write the JSON here")] = None,
) -> None:
    """Sink throughput: preloaded envelope frames drained from Kafka into a scratch database."""
    from mimetic.config import get_settings
    from processors.storage.bench import bench_sink

    result = bench_sink(get_settings(), devices=devices, seconds=seconds)
    _print(result)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2, default=str) + "\n")


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    app.command("sink")(sink_cmd)
    app.add_typer(jobs_app, name="jobs")
    app.add_typer(roles_app, name="roles")
    bench_app.command("storage")(bench_storage_cmd)
    bench_app.command("sink")(bench_sink_cmd)

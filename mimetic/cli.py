"""The `mimetic` command. Feature packages add their own sub-commands through
`register(app, bench_app)` in their `cli` module, so this file stays small.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from mimetic.config import REPO_ROOT, get_settings, settings_markdown

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="mimetic: streaming analytics for facial sEMG therapy devices.")
stack_app = typer.Typer(no_args_is_help=True, help="The local Kafka + TimescaleDB stack on loopback.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks; each prints and writes JSON.")
app.add_typer(stack_app, name="stack")
app.add_typer(bench_app, name="bench")

from mimetic.console import console
from mimetic.console import fail as _fail


@app.callback()
def _global_options(
    database: Annotated[str | None, typer.Option(
        "--database", "-d", metavar="NAME",
        help="Database every sub-command uses (default MIMETIC_PG_DATABASE, else `mimetic`); "
             "the demo's is `mimetic_demo`.")] = None,
) -> None:
    """mimetic: streaming analytics for facial sEMG therapy devices."""
    from mimetic.config import override_settings

    override_settings(pg_database=database)


# --- stack -------------------------------------------------------------------


@stack_app.command("up")
def stack_up(
    brokers: Annotated[int | None, typer.Option(
        "--brokers", min=1, max=9,
        help="Kafka KRaft nodes to run (default MIMETIC_KAFKA_BROKERS); the services need "
             "MIMETIC_KAFKA_BROKERS set to the same number.")] = None,
    kafka_security: Annotated[str | None, typer.Option(
        "--kafka-security", help="plaintext or sasl_ssl (default MIMETIC_KAFKA_STACK_SECURITY): SASL_SSL "
             "SCRAM-SHA-512 + mutual TLS listeners, ACLs per service (README \"Kafka security\").")] = None,
) -> None:
    """Install what is missing, then start Kafka and PostgreSQL + TimescaleDB (reusing running ones)."""
    from mimetic import stack

    from mimetic.config import override_settings

    if kafka_security not in (None, "plaintext", "sasl_ssl"):
        _fail("--kafka-security is plaintext or sasl_ssl")
    override_settings(kafka_brokers=brokers, kafka_stack_security=kafka_security)
    s = get_settings()
    t0 = time.monotonic()
    try:
        for line in stack.up(s):
            console.print(line)
    except stack.StackError as exc:
        _fail(str(exc))
    console.print(f"stack up in {time.monotonic() - t0:.1f}s")
    if s.kafka_brokers > 1:
        console.print(f"Kafka: {s.kafka_brokers} nodes at {','.join(s.bootstrap_servers())}; "
                      f"export MIMETIC_KAFKA_BROKERS={s.kafka_brokers} for the other commands")
    if s.kafka_stack_security == "sasl_ssl":
        console.print("Kafka clients: export MIMETIC_KAFKA_STACK_SECURITY=sasl_ssl "
                      "MIMETIC_KAFKA_SECURITY_PROTOCOL=SASL_SSL and MIMETIC_KAFKA_SASL_USERNAME=<service> "
                      "(mimetic-gateway, -worker, -sink, -notify; tools: mimetic-admin)")


@stack_app.command("down")
def stack_down() -> None:
    """Stop both services (data is kept)."""
    from mimetic import stack

    for line in stack.down(get_settings()):
        console.print(line)


@stack_app.command("reset")
def stack_reset(yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False) -> None:
    """Stop both services and wipe their data (caches are kept)."""
    from mimetic import stack

    if not yes and not typer.confirm(f"wipe all stack data under {get_settings().data_dir}?"):
        raise typer.Exit(1)
    for line in stack.reset(get_settings()):
        console.print(line)


@stack_app.command("status")
def stack_status(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Each service with its version, address and health; exit 1 unless all are healthy."""
    from mimetic import stack

    rows = stack.status(get_settings())
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        table = Table("service", "version", "address", "pid", "health")
        for r in rows:
            version = r["version"] or "-"
            if r.get("timescaledb"):
                version = f"PostgreSQL {version}, TimescaleDB {r['timescaledb']}"
            elif r["service"].startswith("kafka") and r["version"]:
                version = f"Apache Kafka {version} ({r['mode']})"
            health = "[green]healthy[/]" if r["healthy"] else f"[red]down[/] {r.get('error', '')}"
            table.add_row(r["service"], version, r["address"], str(r["pid"] or "-"), health)
        console.print(table)
    if not all(r["healthy"] for r in rows):
        raise typer.Exit(1)


@stack_app.command("check")
def stack_check() -> None:
    """Round-trip a message through Kafka and query TimescaleDB (a quick end-to-end check)."""
    from mimetic.smoke import smoke_check

    try:
        for line in smoke_check(get_settings()):
            console.print(line)
    except Exception as exc:
        _fail(f"{exc}\nIs the stack up? Try `mimetic stack up`, then `mimetic topics` and `mimetic migrate`.")


# --- schema and topics ---------------------------------------------------------


@app.command("migrate")
def migrate_cmd() -> None:
    """Apply pending database migrations in order (safe to repeat)."""
    from mimetic.db.admin import try_prepare_database
    from mimetic.db.migrate import migrate

    s = get_settings()
    try:
        console.print(try_prepare_database(s))
        done = migrate(s.db_dsn())
    except Exception as exc:
        _fail(f"{exc}\nIs the stack up? Try `mimetic stack up`.")
    if done:
        for m in done:
            console.print(f"applied {m.version:04d}_{m.name}")
    else:
        console.print("schema up to date")


@app.command("topics")
def topics_cmd() -> None:
    """Create the Kafka topics defined in mimetic/topics.py (idempotent)."""
    from mimetic.kafka_admin import ensure_topics

    try:
        for line in ensure_topics(get_settings()):
            console.print(line)
    except Exception as exc:
        _fail(f"{exc}\nIs Kafka up? Try `mimetic stack up`.")


@app.command("config")
def config_cmd(
    markdown: Annotated[bool, typer.Option("--markdown", help="Print the README table.")] = False,
    update_readme: Annotated[bool, typer.Option("--update-readme", help="Rewrite the README table.")] = False,
) -> None:
    """Print the effective configuration (or the README table of every variable)."""
    if markdown:
        print(settings_markdown())
        return
    if update_readme:
        from mimetic.readme import update_readme as _update

        console.print("README updated" if _update() else "README already up to date")
        return
    s = get_settings()
    for name in type(s).model_fields:
        value = getattr(s, name)
        if name.endswith("password") and value is not None:
            value = "***"
        console.print(f"MIMETIC_{name.upper()}={value}")


# --- the two commands of the README ----------------------------------------------


def _prepare_stack() -> None:
    from mimetic import stack
    from mimetic.db.migrate import migrate
    from mimetic.kafka_admin import ensure_topics

    s = get_settings()
    for line in stack.up(s):
        console.print(line)
    for line in ensure_topics(s):
        console.print(line)
    applied = migrate(s.db_dsn())
    console.print(f"migrations applied now: {len(applied)}")


@app.command("test", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def test_cmd(ctx: typer.Context) -> None:
    """Bring the stack up, then run the test suite (extra arguments go to pytest)."""
    from mimetic import stack

    from mimetic.stack.tools import ensure_test_tools

    try:
        _prepare_stack()
        for line in ensure_test_tools():
            console.print(line)
    except stack.StackError as exc:
        _fail(str(exc))
    for r in stack.status(get_settings()):
        console.print(f"testing against {r['service']} {r['version']}"
                      + (f" + TimescaleDB {r['timescaledb']}" if r.get("timescaledb") else ""))
    args = [sys.executable, "-m", "pytest", *ctx.args]
    raise typer.Exit(subprocess.call(args, cwd=REPO_ROOT, env=dict(os.environ)))


@app.command("demo")
def demo_cmd(
    patients: Annotated[int, typer.Option(help="Simulated patients (one device each).")] = 4,
    sessions: Annotated[int, typer.Option(help="Sessions per patient.")] = 4,
    duration: Annotated[float, typer.Option(help="Session length in seconds.")] = 60.0,
    seed: Annotated[int, typer.Option(help="Simulation seed.")] = 7,
    faults: Annotated[float, typer.Option(help="Probability of each device fault per session.")] = 0.3,
    out: Annotated[Path | None, typer.Option("--out", help="Folder for the reports and dashboards "
                                             "(default out/demo in the repository).")] = None,
    watch: Annotated[bool, typer.Option("--watch", help="Stream in real time and show the first patient "
                                        "live meanwhile (takes sessions x duration).")] = False,
    keep_running: Annotated[bool, typer.Option("--keep-running", help="Leave gateway, worker and sink running.")] = False,
) -> None:
    """The main job: stack, pipeline, a simulated clinic, results, reports and dashboards.

    Its database is `mimetic_demo` unless the global --database names another (it is recreated;
    an existing one the demo did not make is refused)."""
    from mimetic import stack
    from mimetic.config import overridden
    from mimetic.demo import DEMO_DATABASE, DemoOptions, run_demo

    s = get_settings()
    opt = DemoOptions(patients=patients, sessions=sessions, duration_s=duration, seed=seed, faults=faults,
                      keep_running=keep_running, watch=watch,
                      database=s.pg_database if overridden("pg_database") else DEMO_DATABASE)
    if out is not None:
        opt.out_dir = out.resolve()
    try:
        code = run_demo(s, opt, console)
    except (stack.StackError, RuntimeError) as exc:
        _fail(str(exc))
    raise typer.Exit(code)


@app.command("watch")
def watch_cmd(
    device: Annotated[str | None, typer.Option("--device", help="Device id.")] = None,
    patient: Annotated[str | None, typer.Option("--patient", help="Patient code (their latest device).")] = None,
    lookback: Annotated[float, typer.Option("--lookback", help="Seconds of the stream read at start.")] = 5.0,
    refresh: Annotated[float, typer.Option("--refresh", help="Screen updates per second.")] = 8.0,
) -> None:
    """Live view of a device's running session in the terminal (Ctrl-C ends it).

    Envelopes per muscle pair, asymmetry, current task, signal quality per electrode and open
    alerts, read from the derived Kafka topics."""
    from dashboards.watch.stream import WatchTarget, resolve_target, watch

    if (device is None) == (patient is None):
        _fail("give --device ID or --patient CODE")
    s = get_settings()
    try:
        target = resolve_target(s, WatchTarget(device_id=device, patient_code=patient))
    except LookupError as exc:
        from mimetic.where import nothing_found

        _fail(nothing_found(str(exc), s))
    try:
        watch(s, target, console, lookback_s=max(0.0, lookback), refresh_per_s=refresh)
    except KeyboardInterrupt:
        pass
    except LookupError as exc:
        _fail(f"{exc}: is the stack up and MIMETIC_TOPIC_PREFIX the pipeline's?")


def _register_features() -> None:
    """Feature packages plug their commands in here."""
    import importlib

    for module in ("ingest.cli", "processors.cli", "processors.worker.cli", "processors.storage.cli",
                   "dashboards.cli", "mimetic.deploy_cli", "alerts.cli", "clinical.cli", "outcomes.cli"):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name == module:
                continue
            raise
        mod.register(app, bench_app)


_register_features()


def main() -> None:
    import psycopg

    try:
        app()
    except psycopg.OperationalError as exc:
        from mimetic.where import elsewhere, place

        s = get_settings()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        _fail_main(f"cannot use {place(s)}: {first}\n{elsewhere(s)}\n"
                   "Is the stack up (`mimetic stack status`) and the schema applied (`mimetic migrate`)?")


def _fail_main(msg: str) -> None:
    from mimetic.console import err

    err.print(f"[bold red]error:[/] {msg}", highlight=False)
    raise SystemExit(1)


if __name__ == "__main__":
    main()

"""Commands: `mimetic notify` (the process), `notify receivers|tokens ...`, `alerts ack|resolve|list|audit`.

Management commands use the owner role (they create receivers, tokens and secrets).
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import psycopg
import typer
from rich.table import Table

from mimetic.config import get_settings
from mimetic.console import console
from mimetic.console import fail as _fail

notify_app = typer.Typer(help="Without a sub-command: run the alert notifier (delivery to receivers, "
                         "escalation, HTTP API) until interrupted. Sub-commands manage receivers and tokens.")
receivers_app = typer.Typer(no_args_is_help=True, help="Where alerts are delivered (webhook or e-mail).")
tokens_app = typer.Typer(no_args_is_help=True, help="Bearer tokens of the notifier's HTTP API.")
alerts_app = typer.Typer(no_args_is_help=True, help="Acknowledge, resolve and list alerts.")
notify_app.add_typer(receivers_app, name="receivers")
notify_app.add_typer(tokens_app, name="tokens")


@notify_app.callback(invoke_without_command=True)
def notify_cmd(ctx: typer.Context) -> None:
    """Run the notifier until interrupted (without a sub-command)."""
    if ctx.invoked_subcommand is not None:
        return
    import logging

    from .notifier import run_notifier

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    s = get_settings()
    console.print(f"notifier: API on http://{s.notify_host}:{s.notify_port}, group {s.notify_group}")
    asyncio.run(run_notifier(s))


def _conn() -> psycopg.Connection:
    try:
        return psycopg.connect(get_settings().db_dsn(), autocommit=True)
    except Exception as exc:
        _fail(f"{exc}\nIs the stack up? Try `mimetic stack up` and `mimetic migrate`.")
        raise


# --- receivers ------------------------------------------------------------------------------


@receivers_app.command("add")
def receivers_add(
    name: Annotated[str, typer.Argument(help="Receiver name (letters, digits, . _ -).")],
    kind: Annotated[str, typer.Option("--kind", help="webhook or email.")] = "webhook",
    target: Annotated[str, typer.Option("--target", help="Webhook URL or e-mail address.")] = "",
    clinic: Annotated[str | None, typer.Option("--clinic", help="The clinic it serves (default: operators).")] = None,
    order: Annotated[int, typer.Option("--order", help="Escalation order: 0 is told first, higher tiers "
                                                       "when a critical alert is not acknowledged.")] = 0,
) -> None:
    """Add a receiver; a webhook's signing secret is printed once (keep it for verification)."""
    from .receivers import ReceiverError, add_receiver

    with _conn() as conn:
        try:
            rec, secret = add_receiver(get_settings(), conn, name, kind, target, clinic, order)
        except ReceiverError as exc:
            _fail(str(exc))
    console.print(f"receiver {rec.name} ({rec.kind}, {rec.audience}, order {rec.escalation_order})")
    if secret:
        console.print("signing secret (shown once; verify X-Mimetic-Signature with it):")
        print(secret)


@receivers_app.command("list")
def receivers_list() -> None:
    """Every receiver (never a secret)."""
    from .receivers import list_receivers

    with _conn() as conn:
        rows = list_receivers(conn)
    table = Table("name", "audience", "kind", "order", "target", "enabled")
    for r in rows:
        table.add_row(r.name, r.audience, r.kind, str(r.escalation_order), r.target, "yes" if r.enabled else "no")
    console.print(table)


@receivers_app.command("remove")
def receivers_remove(name: Annotated[str, typer.Argument()]) -> None:
    """Remove a receiver, its pending deliveries and its secret."""
    from .receivers import ReceiverError, remove_receiver

    with _conn() as conn:
        try:
            remove_receiver(get_settings(), conn, name)
        except ReceiverError as exc:
            _fail(str(exc))
    console.print(f"removed {name}")


# --- tokens -----------------------------------------------------------------------------------


@tokens_app.command("add")
def tokens_add(
    name: Annotated[str, typer.Argument(help="The person (recorded as who acknowledged).")],
    clinic: Annotated[str | None, typer.Option("--clinic", help="A clinic user's clinic (default: operator).")] = None,
) -> None:
    """Issue an API token (printed once; only its hash is stored)."""
    from .receivers import ReceiverError, add_token

    with _conn() as conn:
        try:
            token = add_token(conn, name, clinic)
        except ReceiverError as exc:
            _fail(str(exc))
    console.print("token (shown once, use as `Authorization: Bearer <token>`):")
    print(token)


@tokens_app.command("list")
def tokens_list() -> None:
    from .receivers import list_tokens

    with _conn() as conn:
        for name, clinic, created in list_tokens(conn):
            console.print(f"{name}  {clinic or 'operator'}  {created:%Y-%m-%d %H:%M}")


@tokens_app.command("revoke")
def tokens_revoke(name: Annotated[str, typer.Argument()]) -> None:
    from .receivers import ReceiverError, revoke_token

    with _conn() as conn:
        try:
            revoke_token(conn, name)
        except ReceiverError as exc:
            _fail(str(exc))
    console.print(f"revoked {name}")


# --- alerts -------------------------------------------------------------------------------------


async def _owner(fn, *args):
    from psycopg import AsyncConnection

    async with await AsyncConnection.connect(get_settings().db_dsn(), autocommit=True) as conn:
        return await fn(conn, *args)


def _action(action: str, alert_id: str, by: str, note: str) -> None:
    from . import actions

    fn = actions.acknowledge if action == "ack" else actions.resolve
    try:
        res = asyncio.run(_owner(fn, alert_id, actions.Scope(actor=by, owner=True), note))
    except actions.NoSuchAlert:
        _fail(f"no alert {alert_id}")
    if res.done:
        console.print(f"{alert_id} {res.action} by {res.by} at {res.at:%Y-%m-%d %H:%M:%S}")
    else:
        console.print(f"{alert_id} was already {res.action} by {res.by} at {res.at:%Y-%m-%d %H:%M:%S}")


@alerts_app.command("ack")
def alerts_ack(
    alert_id: Annotated[str, typer.Argument()],
    by: Annotated[str, typer.Option("--by", help="Who acknowledges.")],
    note: Annotated[str, typer.Option("--note")] = "",
) -> None:
    """Acknowledge an alert (stops its escalation)."""
    _action("ack", alert_id, by, note)


@alerts_app.command("resolve")
def alerts_resolve(
    alert_id: Annotated[str, typer.Argument()],
    by: Annotated[str, typer.Option("--by", help="Who resolves.")],
    note: Annotated[str, typer.Option("--note")] = "",
) -> None:
    """Resolve an alert (its cause was dealt with)."""
    _action("resolve", alert_id, by, note)


@alerts_app.command("list")
def alerts_list(
    all_: Annotated[bool, typer.Option("--all", help="Resolved ones too.")] = False,
    clinic: Annotated[str | None, typer.Option("--clinic", help="Only this clinic's devices.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Alerts the notifier has taken, newest first (open ones unless --all)."""
    from . import actions

    rows = asyncio.run(_owner(actions.list_alerts, actions.Scope("cli", clinic, owner=True), not all_))
    if as_json:
        print(json.dumps([r.to_json() for r in rows], indent=1))
        return
    table = Table("alert", "type", "sev.", "device", "raised", "state", "handled")
    for r in rows:
        state = "cleared" if r.cleared_at else "active"
        handled = (f"resolved by {r.resolved_by}" if r.resolved_at else
                   f"ack by {r.acknowledged_by}" if r.acknowledged_at else
                   f"pending {r.pending}" if r.pending else "-")
        table.add_row(r.alert_id, r.alert_type, r.severity, r.device_id, f"{r.raised_at:%m-%d %H:%M}", state,
                      handled)
    console.print(table)


@alerts_app.command("audit")
def alerts_audit(alert_id: Annotated[str, typer.Argument()]) -> None:
    """Every delivery, acknowledgement, resolution and escalation of one alert."""
    from . import actions

    for t, action, state, receiver, actor, detail in asyncio.run(_owner(actions.audit, alert_id)):
        where = f" {state or ''} -> {receiver}" if receiver else ""
        console.print(f"{t:%Y-%m-%d %H:%M:%S} {action}{where} by {actor} {detail}")


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    app.add_typer(notify_app, name="notify")
    app.add_typer(alerts_app, name="alerts")

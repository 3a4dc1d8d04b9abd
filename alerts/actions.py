"""Acknowledge, resolve and list alerts (CLI and HTTP API share these).

A clinic user acts only on alerts of their clinic's devices: for anyone else an alert
of another clinic does not exist (the answer is the same as for an unknown id). Each
acknowledgement or resolution is one audit row; repeating one changes nothing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

MAX_NOTE_CHARS = 2000
OPERATOR = None   # scope of an operator or the owner: every clinic


class NoSuchAlert(LookupError):
    pass


@dataclass(frozen=True)
class Scope:
    """Who acts: a clinic user (clinic_id) or an operator (None); owner may read the sink's tables."""

    actor: str
    clinic_id: str | None = OPERATOR
    owner: bool = False


@dataclass(frozen=True)
class ActionResult:
    alert_id: str
    action: str
    done: bool           # False: it had been done already
    by: str | None
    at: datetime | None


async def _alert(conn: AsyncConnection, alert_id: str, scope: Scope) -> None:
    """Make sure the alert exists for this scope and has a handling row."""
    cur = await conn.execute(
        "select h.device_id, d.clinic_id from alert_handling h left join device d using (device_id) "
        "where h.alert_id = %s", (alert_id,))
    row = await cur.fetchone()
    if row is None and scope.owner:   # an alert the sink stored before any notifier saw it
        cur = await conn.execute(
            "insert into alert_handling (alert_id, device_id, alert_type, severity, raised_at, cleared_at) "
            "select alert_id, device_id, alert_type, severity, raised_at, cleared_at from alert where alert_id = %s "
            "on conflict do nothing returning device_id", (alert_id,))
        got = await cur.fetchone()
        if got is not None:
            cur = await conn.execute("select %s, clinic_id from device where device_id = %s", (got[0], got[0]))
            row = await cur.fetchone() or (got[0], None)
    if row is None or (scope.clinic_id is not None and row[1] != scope.clinic_id):
        raise NoSuchAlert(alert_id)


async def _act(conn: AsyncConnection, alert_id: str, scope: Scope, note: str, action: str) -> ActionResult:
    col = {"acknowledged": ("acknowledged_at", "acknowledged_by", "ack_note"),
           "resolved": ("resolved_at", "resolved_by", "resolve_note")}[action]
    note = note[:MAX_NOTE_CHARS]
    async with conn.transaction():
        await _alert(conn, alert_id, scope)
        cur = await conn.execute(
            f"update alert_handling set {col[0]} = now(), {col[1]} = %s, {col[2]} = %s "
            f"where alert_id = %s and {col[0]} is null returning {col[1]}, {col[0]}",
            (scope.actor, note, alert_id))
        row = await cur.fetchone()
        if row is None:
            cur = await conn.execute(f"select {col[1]}, {col[0]} from alert_handling where alert_id = %s",
                                     (alert_id,))
            by, at = await cur.fetchone()
            return ActionResult(alert_id, action, False, by, at)
        await conn.execute(
            "insert into app.alert_audit (action, alert_id, actor, detail) values (%s, %s, %s, %s)",
            (action, alert_id, scope.actor, note))
        return ActionResult(alert_id, action, True, row[0], row[1])


async def acknowledge(conn: AsyncConnection, alert_id: str, scope: Scope, note: str = "") -> ActionResult:
    """Someone has seen the alert and is on it: stops its escalation."""
    return await _act(conn, alert_id, scope, note, "acknowledged")


async def resolve(conn: AsyncConnection, alert_id: str, scope: Scope, note: str = "") -> ActionResult:
    """The cause was dealt with (implies acknowledged: the acknowledgement is recorded too if missing)."""
    result = await _act(conn, alert_id, scope, note, "resolved")
    if result.done:
        await _act(conn, alert_id, scope, note, "acknowledged")
    return result


@dataclass(frozen=True)
class AlertRow:
    alert_id: str
    alert_type: str
    severity: str
    device_id: str
    clinic_id: str | None
    raised_at: datetime
    cleared_at: datetime | None
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    resolved_by: str | None
    resolved_at: datetime | None
    escalated_order: int | None
    delivered: int
    pending: int

    def to_json(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(self).items()}


async def list_alerts(conn: AsyncConnection, scope: Scope, open_only: bool = True, limit: int = 200
                      ) -> list[AlertRow]:
    """Alerts the notifier took, newest first; open = not resolved."""
    cur = await conn.execute(
        """
        select h.alert_id, h.alert_type, h.severity, h.device_id, d.clinic_id, h.raised_at, h.cleared_at,
               h.acknowledged_by, h.acknowledged_at, h.resolved_by, h.resolved_at, h.escalated_order,
               (select count(*) from app.alert_delivery x where x.alert_id = h.alert_id and x.status = 'delivered'),
               (select count(*) from app.alert_delivery x where x.alert_id = h.alert_id and x.status = 'pending')
        from alert_handling h left join device d on d.device_id = h.device_id
        where (%(clinic)s::text is null or d.clinic_id = %(clinic)s) and (not %(open)s or h.resolved_at is null)
        order by h.raised_at desc limit %(limit)s
        """, {"clinic": scope.clinic_id, "open": open_only, "limit": max(1, min(limit, 5000))})
    return [AlertRow(*row) for row in await cur.fetchall()]


async def audit(conn: AsyncConnection, alert_id: str) -> list[tuple]:
    """(time, action, state, receiver, actor, detail) of one alert, oldest first (owner only)."""
    cur = await conn.execute(
        "select a.time, a.action, a.state, v.name, a.actor, a.detail from app.alert_audit a "
        "left join app.alert_receiver v using (receiver_id) where a.alert_id = %s order by a.audit_id", (alert_id,))
    return await cur.fetchall()

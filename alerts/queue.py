"""The notifier's durable queue in the database: notices, deliveries, escalation.

Every function runs one transaction on an autocommit ``psycopg.AsyncConnection``.

* :func:`enqueue` turns alert records into notices and pending deliveries (the step
  after which the notifier may commit the records' Kafka offsets). A replayed record
  finds its notice and adds nothing.
* :func:`claim_due` leases due deliveries to one sender; :func:`record_delivered`,
  :func:`record_failure` and :func:`release` end the lease. A sender that dies leaves
  the lease to expire, and the delivery is sent again with the same idempotency key.
* :func:`escalate_due` queues the raise (and clear, if any) of critical alerts nobody
  acknowledged in time for the next escalation tier of their audience.

Audience: patient-safety alert types go to the device's clinic's receivers, the rest to
the operators' (``clinic_id is null``). A patient-safety alert of a device without a
known clinic goes to the operators. Within an audience, only the lowest tier
(``escalation_order``) is told first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from processors import records as r
from processors.alerting import audience_of

from .payload import notice_payload


@dataclass(frozen=True)
class Due:
    """One leased delivery: a notice to a receiver."""

    alert_id: str
    state: str
    receiver_id: int
    reason: str
    attempts: int
    payload: dict
    receiver: str
    kind: str
    target: str
    secret_ref: str | None


def _audience_clinic(audience: str, clinic_id: str | None) -> str | None:
    """The clinic whose receivers are told, or None for the operators."""
    return clinic_id if audience == "clinic" else None


_FIRST_TIER = """
    select receiver_id from app.alert_receiver
    where enabled and clinic_id is not distinct from %(clinic)s
      and escalation_order = (select min(escalation_order) from app.alert_receiver
                              where enabled and clinic_id is not distinct from %(clinic)s)
"""


async def enqueue(conn: AsyncConnection, recs: list[r.AlertRecord]) -> int:
    """Record notices and their pending deliveries for ``recs`` (in order); returns new notices."""
    if not recs:
        return 0
    new = 0
    async with conn.transaction():
        devices = sorted({x.device_id for x in recs})
        cur = await conn.execute("select device_id, clinic_id from device where device_id = any(%s)", (devices,))
        clinic_of = dict(await cur.fetchall())
        for rec in recs:
            clinic = clinic_of.get(rec.device_id)
            audience = audience_of(rec.alert_type)
            if audience == "clinic" and clinic is None:
                audience = "operators"
            cur = await conn.execute(
                "insert into app.alert_notice (alert_id, state, device_id, clinic_id, audience, alert_type, "
                "severity, event_time, payload) values (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "on conflict do nothing returning 1",
                (rec.alert_id, rec.state, rec.device_id, clinic, audience, rec.alert_type, rec.severity,
                 rec.time, Jsonb(notice_payload(rec, clinic))))
            if await cur.fetchone() is None:
                continue   # a replay: its deliveries were queued the first time
            new += 1
            args = {"alert": rec.alert_id, "state": rec.state, "clinic": _audience_clinic(audience, clinic)}
            if rec.state == "raised":
                await conn.execute(
                    f"insert into app.alert_delivery (alert_id, state, receiver_id) "
                    f"select %(alert)s, %(state)s, receiver_id from ({_FIRST_TIER}) t on conflict do nothing", args)
                await conn.execute(
                    "insert into alert_handling (alert_id, device_id, alert_type, severity, raised_at, "
                    "escalated_order) values (%s, %s, %s, %s, %s, (select min(escalation_order) "
                    "from app.alert_receiver where enabled and clinic_id is not distinct from %s)) "
                    "on conflict (alert_id) do nothing",
                    (rec.alert_id, rec.device_id, rec.alert_type, rec.severity, rec.raised_at, args["clinic"]))
            else:
                # everyone told of the raise (escalation tiers included), or the first tier
                await conn.execute(
                    f"insert into app.alert_delivery (alert_id, state, receiver_id, reason) "
                    f"select %(alert)s, %(state)s, receiver_id, min(reason) from ("
                    f"  select receiver_id, reason from app.alert_delivery "
                    f"  where alert_id = %(alert)s and state = 'raised'"
                    f"  union all select receiver_id, 'audience' from ({_FIRST_TIER}) t) x "
                    f"group by receiver_id on conflict do nothing", args)
                await conn.execute(
                    "insert into alert_handling (alert_id, device_id, alert_type, severity, raised_at, cleared_at) "
                    "values (%s, %s, %s, %s, %s, %s) "
                    "on conflict (alert_id) do update set cleared_at = excluded.cleared_at",
                    (rec.alert_id, rec.device_id, rec.alert_type, rec.severity, rec.raised_at, rec.time))
    return new


async def claim_due(conn: AsyncConnection, limit: int, lease_s: float, busy: list[int] | None = None) -> list[Due]:
    """Lease up to ``limit`` due deliveries (oldest first), none for the ``busy`` receivers. A clear
    waits for its raise to the same receiver, so a receiver never hears of a clear before the raise."""
    async with conn.transaction():
        cur = await conn.execute(
            """
            with due as (
                select d.alert_id, d.state, d.receiver_id from app.alert_delivery d
                join app.alert_receiver v on v.receiver_id = d.receiver_id and v.enabled
                where d.status = 'pending' and d.next_attempt_at <= now() and d.receiver_id <> all(%s)
                  and (d.lease_until is null or d.lease_until <= now())
                  and not (d.state = 'cleared' and exists (
                      select 1 from app.alert_delivery p where p.alert_id = d.alert_id
                        and p.receiver_id = d.receiver_id and p.state = 'raised' and p.status = 'pending'))
                order by d.created_at, d.state desc limit %s
                for update of d skip locked)
            update app.alert_delivery d set lease_until = now() + make_interval(secs => %s)
            from due, app.alert_notice n, app.alert_receiver v
            where d.alert_id = due.alert_id and d.state = due.state and d.receiver_id = due.receiver_id
              and n.alert_id = d.alert_id and n.state = d.state and v.receiver_id = d.receiver_id
            returning d.alert_id, d.state, d.receiver_id, d.reason, d.attempts, n.payload, v.name, v.kind,
                      v.target, v.secret_ref, d.created_at
            """, (busy or [], limit, lease_s))
        rows = await cur.fetchall()
    rows.sort(key=lambda x: (x[10], x[1] != "raised"))
    return [Due(*row[:10]) for row in rows]


async def record_delivered(conn: AsyncConnection, d: Due, detail: str) -> None:
    async with conn.transaction():
        cur = await conn.execute(
            "update app.alert_delivery set status = 'delivered', delivered_at = now(), lease_until = null, "
            "attempts = attempts + 1, last_error = null "
            "where alert_id = %s and state = %s and receiver_id = %s and status = 'pending' returning 1",
            (d.alert_id, d.state, d.receiver_id))
        if await cur.fetchone() is not None:
            await conn.execute(
                "insert into app.alert_audit (action, alert_id, state, receiver_id, actor, detail) "
                "values ('delivered', %s, %s, %s, 'notifier', %s)",
                (d.alert_id, d.state, d.receiver_id, f"{d.kind} {d.receiver} attempt {d.attempts + 1}; {detail}"))


async def record_failure(conn: AsyncConnection, d: Due, error: str, next_attempt_at: datetime) -> None:
    await conn.execute(
        "update app.alert_delivery set attempts = attempts + 1, last_error = %s, next_attempt_at = %s, "
        "lease_until = null where alert_id = %s and state = %s and receiver_id = %s and status = 'pending'",
        (error[:500], next_attempt_at, d.alert_id, d.state, d.receiver_id))


async def release(conn: AsyncConnection, ds: list[Due], next_attempt_at: datetime) -> None:
    """Give leased deliveries back untried (their receiver just failed): due again at the given time."""
    for d in ds:
        await conn.execute(
            "update app.alert_delivery set lease_until = null, next_attempt_at = greatest(next_attempt_at, %s) "
            "where alert_id = %s and state = %s and receiver_id = %s and status = 'pending'",
            (next_attempt_at, d.alert_id, d.state, d.receiver_id))


async def escalate_due(conn: AsyncConnection, escalate_after_s: float, limit: int = 100) -> int:
    """Escalate critical alerts not acknowledged or resolved within ``escalate_after_s`` of their
    last notification; returns how many went to a new tier."""
    escalated = 0
    async with conn.transaction():
        cur = await conn.execute(
            """
            select h.alert_id, h.escalated_order, n.audience, n.clinic_id from alert_handling h
            join app.alert_notice n on n.alert_id = h.alert_id and n.state = 'raised'
            where h.severity = 'critical' and h.acknowledged_at is null and h.resolved_at is null
              and coalesce(h.escalated_at, h.notified_at) <= now() - make_interval(secs => %s)
            order by h.notified_at limit %s
            for update of h skip locked
            """, (escalate_after_s, limit))
        for alert, order, audience, clinic in await cur.fetchall():
            args = {"alert": alert, "clinic": _audience_clinic(audience, clinic),
                    "order": -1 if order is None else order}
            cur = await conn.execute(
                "select min(escalation_order) from app.alert_receiver where enabled "
                "and clinic_id is not distinct from %(clinic)s and escalation_order > %(order)s", args)
            nxt = (await cur.fetchone())[0]
            if nxt is None:   # no further tier: look again only after another period
                await conn.execute("update alert_handling set escalated_at = now() where alert_id = %s", (alert,))
                continue
            args["next"] = nxt
            cur = await conn.execute(
                "insert into app.alert_delivery (alert_id, state, receiver_id, reason) "
                "select n.alert_id, n.state, v.receiver_id, 'escalation' from app.alert_notice n "
                "cross join app.alert_receiver v where n.alert_id = %(alert)s and v.enabled "
                "and v.clinic_id is not distinct from %(clinic)s and v.escalation_order = %(next)s "
                "on conflict do nothing returning receiver_id", args)
            told = sorted({row[0] for row in await cur.fetchall()})
            await conn.execute("update alert_handling set escalated_order = %s, escalated_at = now() "
                               "where alert_id = %s", (nxt, alert))
            await conn.execute(
                "insert into app.alert_audit (action, alert_id, state, actor, detail) "
                "values ('escalated', %s, 'raised', 'notifier', %s)",
                (alert, f"not acknowledged within {escalate_after_s:g} s: tier {nxt}, receivers {told}"))
            escalated += 1
    return escalated

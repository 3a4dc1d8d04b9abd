"""Erasure of one patient's data from every table (`mimetic patients erase CODE`).

The tables are found, not listed: every base table of the ``public`` and ``app`` schemas
with a ``session_id`` column loses the patient's sessions' rows, every one with a
``patient_id`` column the patient's rows, so a table a later migration adds is erased
too. Alerts of those sessions go with their notices, deliveries and handling; device
telemetry goes for the periods the patient had a device. What stays:

* ``app.access_audit`` and ``app.alert_audit`` (append-only by design): they hold the
  internal patient number and alert ids, never a code, name or device reading;
* the device row (it moves on to the next patient) with its patient cleared;
* Kafka: raw device records (frames, telemetry, session events) and derived records
  until the topics' retention ends (:func:`kafka_remainder` says how long). They carry
  the device id and session ids, not the patient's code or identity.

The erasure is audited (``erase``/``patient``) with the row counts only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from mimetic import topics
from mimetic.config import Settings

from .service import Actor, _patient, _tx, audit

KEEP = {("app", "access_audit"), ("app", "alert_audit")}


@dataclass
class Erasure:
    patient_id: int
    sessions: int
    rows: dict[str, int] = field(default_factory=dict)   # table -> rows deleted

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def _tables_with(conn: psycopg.Connection, column: str) -> list[tuple[str, str]]:
    return [(s, t) for s, t in conn.execute(
        "select c.table_schema, c.table_name from information_schema.columns c "
        "join information_schema.tables t using (table_schema, table_name) "
        "where t.table_type = 'BASE TABLE' and c.table_schema in ('public', 'app') and c.column_name = %s "
        "order by 1, 2", (column,)).fetchall() if (s, t) not in KEEP]


def _delete(conn: psycopg.Connection, out: Erasure, schema: str, table: str, where: str, args: tuple) -> None:
    cur = conn.execute(sql.SQL("delete from {}.{} where " + where).format(sql.Identifier(schema),
                                                                          sql.Identifier(table)), args)
    if cur.rowcount:
        key = table if schema == "public" else f"{schema}.{table}"
        out.rows[key] = out.rows.get(key, 0) + cur.rowcount


def erase_patient(conn: psycopg.Connection, actor: Actor, code: str) -> Erasure:
    """Remove the patient's rows from every table, in one transaction."""
    with _tx(conn):
        pid, clinic = _patient(conn, actor, code, lock=True)
        sids = [r[0] for r in conn.execute(
            "select session_id from therapy_session where patient_id = %s "
            "union select session_id from session_summary where patient_id = %s", (pid, pid)).fetchall()]
        out = Erasure(patient_id=pid, sessions=len(sids))
        alert_ids = [r[0] for r in conn.execute("select alert_id from alert where session_id = any(%s)",
                                                (sids,)).fetchall()]
        if alert_ids:
            for schema, table in (("app", "alert_delivery"), ("app", "alert_notice"), ("public", "alert_handling")):
                _delete(conn, out, schema, table, "alert_id = any(%s)", (alert_ids,))
        skip = {("public", "therapy_session"), ("public", "session_summary")}
        for schema, table in _tables_with(conn, "session_id"):
            if (schema, table) not in skip:
                _delete(conn, out, schema, table, "session_id = any(%s)", (sids,))
        for schema, table in (("public", "session_summary"), ("public", "therapy_session")):
            _delete(conn, out, schema, table, "session_id = any(%s)", (sids,))
        _delete(conn, out, "public", "telemetry",
                "exists (select 1 from device_assignment a where a.patient_id = %s and a.device_id = telemetry.device_id "
                "and telemetry.time >= a.valid_from and (a.valid_to is null or telemetry.time < a.valid_to))", (pid,))
        conn.execute("update device set patient_id = null where patient_id = %s", (pid,))
        for schema, table in _tables_with(conn, "patient_id"):
            if (schema, table) not in {("public", "patient"), ("public", "device")}:
                _delete(conn, out, schema, table, "patient_id = %s", (pid,))
        _delete(conn, out, "public", "patient", "patient_id = %s", (pid,))
        audit(conn, actor, "erase", "patient", patient_id=pid, clinic_id=clinic,
              detail=f"{out.sessions} sessions; " + ", ".join(f"{k} {v}" for k, v in sorted(out.rows.items())))
    return out


def kafka_remainder(s: Settings) -> list[str]:
    """What Kafka keeps of an erased patient, one line per topic: name, retention (each record is
    deleted that long after it was written), what the topic holds."""
    lines = []
    for spec in topics.ALL_TOPICS:
        ms = spec.configs.get("retention.ms")
        if spec in (topics.WORKER_TICKS,) or ms is None:
            continue
        days = int(ms) / 86_400_000
        lines.append(f"{spec.name(s)} ({days:g} days): {spec.purpose}")
    return lines

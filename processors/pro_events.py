"""Patient-reported outcomes sent by the patient's app as session events (wire ``pro``):
the worker turns each into a :class:`~processors.records.ProRecord`, the sink stores it in
``patient_reported_outcome`` (migration 0014) for the patient the session belongs to."""

from __future__ import annotations

from datetime import datetime, timezone

import psycopg

from ingest.wire import ProAnswer
from processors import records as R


def pro_record(device_id: str, ev: ProAnswer) -> R.ProRecord:
    return R.ProRecord(device_id=device_id, session_id=ev.session_id,
                       time=datetime.fromtimestamp(ev.t_us / 1e6, timezone.utc), instrument=ev.instrument,
                       score=float(ev.score),  # type: ignore[arg-type]  # set by ProAnswer's validator
                       item_answers=list(ev.item_answers) if ev.item_answers is not None else None)


#: the session's patient, else the patient the device was assigned to when the answer was given;
#: a replayed answer (same patient, instrument, time) is stored once
INSERT_PRO = """
    insert into patient_reported_outcome (patient_id, instrument, score, item_answers, answered_at, source,
                                          session_id, device_id)
    select x.patient_id, %(instrument)s, %(score)s, %(items)s, %(time)s, 'app', %(session_id)s, %(device_id)s
    from (select coalesce((select patient_id from therapy_session where session_id = %(session_id)s),
                          app.device_patient_at(%(device_id)s, %(time)s)) as patient_id) x
    where x.patient_id is not null
    on conflict do nothing
"""


def insert_pros(cur: psycopg.Cursor, pros: list[R.ProRecord]) -> tuple[int, int]:
    """(inserted, without a patient) - an answer of a device assigned to nobody is not stored."""
    inserted = orphans = 0
    for p in pros:
        cur.execute(INSERT_PRO, {"instrument": p.instrument, "score": p.score, "items": p.item_answers,
                                 "time": p.time, "session_id": p.session_id, "device_id": p.device_id})
        if cur.rowcount == 1:
            inserted += 1
        elif cur.execute("select coalesce((select patient_id from therapy_session where session_id = %s), "
                         "app.device_patient_at(%s, %s))", (p.session_id, p.device_id, p.time)).fetchone()[0] is None:
            orphans += 1
    return inserted, orphans

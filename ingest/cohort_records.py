"""The clinical records of a simulated cohort (ingest.cohort) in the database: patient,
consent (care and research), therapy course, clinician assessments and PROs, dated from
the course's first day (one session a day; assessment ``after_sessions = k`` on day k).

Written with plain SQL against the 0014 schema as the owner; the intake service (issue 14
item 1) is the clinic's way in, and this module is the simulator's.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import psycopg

from ingest import registry
from ingest.cohort import CoursePatient

ASSESSOR = "sim-assessor"


def course_dates(patient: CoursePatient, first_day: dt.date) -> tuple[dt.date, dt.date]:
    """Start and end date of the course: one session a day from ``first_day``."""
    return first_day, first_day + dt.timedelta(days=patient.planned_sessions - 1)


def enter_patient(conn: psycopg.Connection, clinic_id: str, p: CoursePatient, first_day: dt.date) -> int:
    """One patient's records; returns the patient id. Idempotent per patient code."""
    pid = registry.ensure_patient(conn, clinic_id, p.code, etiology=p.etiology, affected_side=p.affected_side.value,
                                  onset_date=first_day - dt.timedelta(days=14), planned_sessions=p.planned_sessions,
                                  planned_minutes=p.planned_minutes)
    conn.execute("insert into consent (patient_id, purpose, given_on) select %s, x, %s "
                 "from unnest(array['care', 'research']) x on conflict do nothing", (pid, first_day))
    start, end = course_dates(p, first_day)
    if conn.execute("select 1 from therapy_course where patient_id = %s", (pid,)).fetchone():
        return pid
    conn.execute("insert into therapy_course (patient_id, therapy_type, start_date, end_date, planned_sessions, "
                 "minutes_per_session, current_limit_ua) values (%s, %s, %s, %s, %s, %s, %s)",
                 (pid, p.therapy_type, start, end, p.planned_sessions, p.planned_minutes, p.current_limit_ua))
    for a in p.assessments:
        day = first_day + dt.timedelta(days=a.after_sessions)
        conn.execute("insert into clinical_assessment (patient_id, assessed_on, assessor, hb_grade, sunnybrook) "
                     "values (%s, %s, %s, %s, %s)", (pid, day, ASSESSOR, a.hb_grade, a.sunnybrook))
        at = dt.datetime.combine(day, dt.time(12), dt.timezone.utc)
        conn.execute("insert into patient_reported_outcome (patient_id, instrument, score, answered_at, source) "
                     "values (%s, 'face', %s, %s, 'clinic')", (pid, a.face_total, at))
        if a.grc is not None:
            conn.execute("insert into patient_reported_outcome (patient_id, instrument, score, answered_at, source) "
                         "values (%s, 'grc', %s, %s, 'clinic')", (pid, a.grc, at))
    return pid


def enter_cohort(conn: psycopg.Connection, clinic_id: str, patients: Sequence[CoursePatient],
                 first_day: dt.date) -> dict[str, int]:
    """Every patient's records in one transaction; patient id by code."""
    with conn.transaction():
        registry.ensure_clinic(conn, clinic_id, "Simulated cohort clinic")
        return {p.code: enter_patient(conn, clinic_id, p, first_day) for p in patients}

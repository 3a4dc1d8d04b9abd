"""The clinical records of a simulated cohort (ingest.cohort) entered as a clinic would,
through :mod:`clinical.service`: patient, care and research consent, the therapy course,
clinician assessments and PROs, dated from the course's first day (one session a day;
the visit ``after_sessions = k`` on day k). Visits still in the future are not entered.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import psycopg

from clinical import model as M
from clinical import service as S
from ingest import registry
from ingest.cohort import CoursePatient

ACTOR = S.Actor(name="cohort-simulator", channel="demo")
ASSESSOR = "sim-assessor"


def course_dates(patient: CoursePatient, first_day: dt.date) -> tuple[dt.date, dt.date]:
    """Start and end date of the course: one session a day from ``first_day``."""
    return first_day, first_day + dt.timedelta(days=patient.planned_sessions - 1)


def enter_patient(conn: psycopg.Connection, clinic_id: str, p: CoursePatient, first_day: dt.date) -> int:
    """One patient's records; returns the patient id. A patient or course already there (the
    simulator's registration) is kept; visits are entered with a course this call creates."""
    now = dt.datetime.now(dt.timezone.utc)
    row = conn.execute("select patient_id from patient where code = %s", (p.code,)).fetchone()
    if row is None:
        pid = S.add_patient(conn, ACTOR, M.PatientIn(
            code=p.code, clinic_id=clinic_id, etiology=p.etiology, affected_side=p.affected_side.value,
            onset_date=first_day - dt.timedelta(days=14), consent_care=min(first_day, now.date()),
            consent_research=min(first_day, now.date())))
    else:
        pid = int(row[0])
    start, end = course_dates(p, first_day)
    if conn.execute("select 1 from therapy_course where patient_id = %s and start_date <= %s "
                    "and (end_date is null or end_date >= %s)", (pid, start, start)).fetchone():
        return pid
    S.add_course(conn, ACTOR, p.code, M.CourseIn(
        therapy_type=p.therapy_type, start_date=start, end_date=end, planned_sessions=p.planned_sessions,
        minutes_per_session=p.planned_minutes, current_limit_ua=p.current_limit_ua))
    for a in p.assessments:
        day = first_day + dt.timedelta(days=a.after_sessions)
        if day > now.date():
            continue
        S.add_assessment(conn, ACTOR, p.code, M.AssessmentIn(assessed_on=day, assessor=ASSESSOR,
                                                             hb_grade=a.hb_grade, sunnybrook=a.sunnybrook))
        at = min(now, dt.datetime.combine(day, dt.time(12), dt.timezone.utc))
        S.add_pro(conn, ACTOR, p.code, M.ProIn(instrument="face", score=a.face_total, answered_at=at))
        if a.grc is not None:
            S.add_pro(conn, ACTOR, p.code, M.ProIn(instrument="grc", score=a.grc, answered_at=at))
    return pid


def enter_cohort(conn: psycopg.Connection, clinic_id: str, patients: Sequence[CoursePatient],
                 first_day: dt.date) -> dict[str, int]:
    """Every patient's records (each through the service's own transactions); patient id by code."""
    registry.ensure_clinic(conn, clinic_id, "Simulated cohort clinic")
    return {p.code: enter_patient(conn, clinic_id, p, first_day) for p in patients}

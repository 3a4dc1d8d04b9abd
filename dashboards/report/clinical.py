"""Courses, clinician grades and patient-reported outcomes of one patient (migration 0014).

Read through the clinic views and tables (row-level security applies): course_adherence
(each course against its plan), course_session (which course a session belongs to),
clinical_assessment (House-Brackmann, Sunnybrook) and patient_reported_outcome with
its instrument's range and direction (pro_instrument).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import psycopg


@dataclass(frozen=True)
class Course:
    course_id: int
    therapy_type: str
    start_date: date
    end_date: date | None
    planned_sessions: int
    minutes_per_session: int
    current_limit_ua: float | None        # prescribed limit (microcurrent only)
    sessions_done: int                    # finished sessions of the course's therapy type
    sessions_full_length: int             # of those, >= 90 % of the planned minutes
    total_minutes: float
    minutes_done_pct: float               # total minutes against planned sessions x minutes
    max_stim_current_ua: float | None     # highest measured current in the course's sessions


@dataclass(frozen=True)
class Grade:
    assessed_on: date
    assessor: str
    hb_grade: int | None                  # House-Brackmann 1-6 (I normal .. VI total paralysis)
    sunnybrook: int | None                # composite 0-100 (100 normal)


@dataclass(frozen=True)
class Pro:
    instrument: str                       # face, saq, grc
    name: str
    score: float
    score_min: float
    score_max: float
    higher_is_better: bool
    answered_at: datetime
    source: str                           # clinic or app


@dataclass
class Clinical:
    courses: list[Course] = field(default_factory=list)
    session_course: dict[str, int] = field(default_factory=dict)   # session id -> course id
    grades: list[Grade] = field(default_factory=list)
    pros: list[Pro] = field(default_factory=list)

    def course_of(self, session_id: str) -> Course | None:
        cid = self.session_course.get(session_id)
        return next((c for c in self.courses if c.course_id == cid), None)

    def pros_by_instrument(self) -> dict[str, list[Pro]]:
        out: dict[str, list[Pro]] = {}
        for p in self.pros:
            out.setdefault(p.instrument, []).append(p)
        return out


def _rows(conn: psycopg.Connection, sql: str, params: tuple) -> list[dict[str, Any]]:
    cur = conn.execute(sql, params)
    names = [c.name for c in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def load_clinical(conn: psycopg.Connection, code: str) -> Clinical:
    courses = [Course(
        r["course_id"], r["therapy_type"], r["start_date"], r["end_date"], r["planned_sessions"],
        r["minutes_per_session"], _f(r["current_limit_ua"]), r["sessions_done"], r["sessions_full_length"],
        float(r["total_minutes"]), float(r["minutes_done_pct"]), _f(r["max_stim_current_ua"]))
        for r in _rows(conn, "select * from course_adherence where patient_code = %s order by start_date",
                       (code,))]
    sc = {str(r["session_id"]): r["course_id"] for r in _rows(
        conn, "select cs.session_id, cs.course_id from course_session cs "
              "join patient p on p.patient_id = cs.patient_id where p.code = %s", (code,))}
    grades = [Grade(**r) for r in _rows(
        conn, "select a.assessed_on, a.assessor, a.hb_grade, a.sunnybrook from clinical_assessment a "
              "join patient p on p.patient_id = a.patient_id where p.code = %s "
              "order by a.assessed_on, a.assessment_id", (code,))]
    pros = [Pro(r["instrument"], r["name"], float(r["score"]), float(r["score_min"]), float(r["score_max"]),
                r["higher_is_better"], r["answered_at"], r["source"]) for r in _rows(
        conn, "select r.instrument, i.name, r.score, i.score_min, i.score_max, i.higher_is_better, "
              "r.answered_at, r.source from patient_reported_outcome r "
              "join pro_instrument i using (instrument) join patient p on p.patient_id = r.patient_id "
              "where p.code = %s order by r.instrument, r.answered_at", (code,))]
    return Clinical(courses, sc, grades, pros)


def _f(v: Any) -> float | None:
    return None if v is None else float(v)

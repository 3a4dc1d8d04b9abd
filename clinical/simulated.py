"""Simulated patients enter the system as a clinic's would: through :mod:`clinical.service`.

``register_patients`` gives each simulated patient a patient record (affected side,
etiology, onset, baseline House-Brackmann and Sunnybrook), care and research consent, a therapy course covering its sessions and
its device from the first session on. It may run again for the same simulation (the
demo and tests re-register): what exists already is left as it is.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

import psycopg

from mimetic.domain import COURSE_TYPES

from . import model as M
from . import service as S

if TYPE_CHECKING:
    from ingest.simulator import Simulation

ACTOR = S.Actor(name="simulator", channel="demo")


def _course(sim: "Simulation", index: int, start: datetime) -> M.CourseIn:
    """The patient's course: the therapy of its first session, the simulation's plan, ending on the
    day its last session ends."""
    plan = sim.plans[index][0]
    kind = plan.therapy_type if plan.therapy_type in COURSE_TYPES else "usual_care"
    limit = max((sim.plans[index][k].stimulation or {}).get("current_limit_ua", 0.0)
                for k in range(sim.n_sessions)) if kind == "microcurrent" else None
    last_end = start + timedelta(seconds=(sim.n_sessions - 1) * sim.session_gap_s + sim.duration_s)
    return M.CourseIn(therapy_type=kind, start_date=start.date(), end_date=last_end.date(), planned_sessions=max(1, sim.n_sessions),
                      minutes_per_session=min(240, max(1, math.ceil(sim.duration_s / 60))),
                      current_limit_ua=limit or None)


def register_patients(conn: psycopg.Connection, sim: "Simulation") -> None:
    """Every simulated patient with consent, baseline grades, course and device assignment
    (devices must exist)."""
    from ingest.cohort import hb_from_phi

    start = datetime.fromtimestamp(sim.start_us / 1e6, timezone.utc)
    today = datetime.now(timezone.utc).date()
    for i, p in enumerate(sim.patients):
        onset = min(today, (start - timedelta(days=14)).date())
        phi0 = p.strength(0)  # the simulated facial function at intake, graded without rater error
        fields = dict(affected_side=p.affected_side.value, etiology=p.etiology, onset_date=onset,
                      baseline_hb_grade=hb_from_phi(phi0), baseline_sunnybrook=round(100 * phi0))
        known = conn.execute("select patient_id from patient where code = %s", (p.code,)).fetchone()
        if known is None:
            S.add_patient(conn, ACTOR, M.PatientIn(code=p.code, clinic_id=sim.clinic_id, consent_care=today,
                                                   consent_research=today, **fields))
        else:
            S.update_patient(conn, ACTOR, p.code, M.PatientFields(**fields))
            for purpose in ("care", "research"):
                if not conn.execute("select app.has_consent(%s, %s)", (known[0], purpose)).fetchone()[0]:
                    S.give_consent(conn, ACTOR, p.code, M.ConsentIn(purpose=purpose, given_on=today))
        course = _course(sim, i, start)
        if not conn.execute("select 1 from therapy_course c join patient p using (patient_id) "
                            "where p.code = %s and c.start_date <= %s and (c.end_date is null or c.end_date >= %s)",
                            (p.code, course.start_date, course.start_date)).fetchone():
            S.add_course(conn, ACTOR, p.code, course)
        _assign(conn, sim.device_ids[i], p.code, start)


def _assign(conn: psycopg.Connection, device_id: str, code: str, start: datetime) -> None:
    """The device goes to the patient from the simulation's start, unless it is already theirs then;
    an earlier run's later assignment of the device moves the start after it (sessions before it
    fall back to the device's current patient)."""
    row = conn.execute(
        "select bool_or(p.code = %s and a.valid_from <= %s and (a.valid_to is null or a.valid_to > %s)), "
        "max(a.valid_from), bool_or(p.code = %s and a.valid_to is null) "
        "from device_assignment a join patient p using (patient_id) where a.device_id = %s",
        (code, start, start, code, device_id)).fetchone()
    if row[0] or row[2]:
        return
    valid_from = start if row[1] is None or row[1] < start else row[1] + timedelta(seconds=1)
    S.assign_device(conn, ACTOR, code, M.AssignmentIn(device_id=device_id, valid_from=valid_from))

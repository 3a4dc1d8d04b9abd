"""The sEMG responder definition on a simulated cohort streamed through the whole pipeline
(simulator -> Kafka -> worker -> sink -> session analysis -> migration 0016's views): each
course's verdict is its patient's true recovery, and `mimetic outcomes` counts it.

Small on purpose (3 patients, one per course type, 6 sessions of 20 s, one muscle pair): the grade and PRO
definitions are tested on 150 patients in tests/outcomes/test_outcomes_sql.py, and the
coverage of the intervals over many cohorts in tests/outcomes/test_cohort_model.py."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from ingest.cohort import cohort, true_abs_ai
from ingest.cohort_records import enter_patient
from ingest.runner import register_simulation, run_simulation
from ingest.simulator import Simulation
from mimetic.config import Settings
from outcomes.definitions import Definition, semg_symmetry
from outcomes.store import course_results, site_of_clinic
from outcomes.summary import summarise

from .conftest import query, wait_for

pytestmark = [pytest.mark.stack, pytest.mark.slow]

SESSIONS = 6


def test_semg_verdicts_through_the_pipeline(pipeline_settings: Settings, services) -> None:
    s = pipeline_settings
    patients = cohort(3, seed=5, sessions=SESSIONS)  # one per course type
    assert {p.responder for p in patients} == {True, False}  # this seed has both
    sim = Simulation(sessions=SESSIONS, duration_s=20, channels=2, seed=5, fault_prob=0.0,
                     device_prefix=f"oc-{s.topic_prefix[-8:]}", clinic_id=f"oc-{s.topic_prefix[-8:]}",
                     course=patients)
    register_simulation(sim, s, kdf_n=2**10)
    first_day = dt.datetime.fromtimestamp(sim.plans[0][0].t0_us / 1e6, dt.timezone.utc).date()
    import psycopg

    with psycopg.connect(s.db_dsn(), autocommit=True) as conn:
        ids = {p.code: enter_patient(conn, sim.clinic_id, p, first_day) for p in patients}
    worker, sink = services("worker"), services("sink")
    asyncio.run(run_simulation(sim, s, via="kafka"))
    sessions = [str(plan.session_id) for plans in sim.plans for plan in plans]

    def analysed() -> bool:
        return query(s, "select count(distinct session_id) from session_muscle_summary "
                        "where session_id = any(%s::uuid[])", (sessions,))[0][0] == len(sessions)

    wait_for(analysed, 300, "every session analysed", [worker, sink])
    rows = dict(query(s, "select patient_id, semg_responder from app.course_outcome where patient_id = any(%s)",
                      (list(ids.values()),)))
    details = query(s, "select patient_id, sessions_done, muscles, round(first_abs_ai::numeric, 3), "
                       "round(last_abs_ai::numeric, 3) from app.course_outcome where patient_id = any(%s)",
                    (list(ids.values()),))
    for p in patients:
        truth = semg_symmetry(true_abs_ai(p)).responder
        assert truth == p.responder
        assert rows[ids[p.code]] is p.responder, (p, details)
    with psycopg.connect(s.db_dsn()) as conn:
        table = summarise(course_results(conn, [site_of_clinic(conn, sim.clinic_id)]))
    semg = {g.therapy_type: g.rate for g in table.rates if g.definition == Definition.SEMG}
    assert sum(r.n for r in semg.values()) == len(patients)
    assert sum(r.successes for r in semg.values()) == sum(p.responder for p in patients)

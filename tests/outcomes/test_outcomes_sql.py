"""Migration 0016 against the Python definitions, and a simulated cohort through the real
database: `mimetic outcomes` recovers each course type's rate within the interval it reports."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import math
import uuid

import psycopg
import pytest
from typer.testing import CliRunner

from ingest.cohort import DEFAULT_EFFECTS, cohort, expected_rates
from ingest.cohort_records import enter_cohort
from mimetic.config import Settings
from outcomes.definitions import Definition, clinician_grade, patient_reported
from outcomes.proportions import newcombe_difference, wilson_interval
from outcomes.store import course_results, site_of_clinic, sql_rates
from outcomes.summary import summarise

pytestmark = pytest.mark.stack

COHORT_PATIENTS = 150  # 50 per course type


def test_sql_definitions_equal_python(db: psycopg.Connection) -> None:
    hb = [None, 1, 3, 4, 6]
    sb = [None, 0, 35, 44, 45, 100]
    cases = list(itertools.product(hb, hb, sb, sb))
    got = db.execute("select app.outcome_grade_responder(a, b, c, d) from unnest(%s::int[], %s::int[], "
                     "%s::numeric[], %s::numeric[]) as t(a, b, c, d)",
                     [list(x) for x in zip(*cases)]).fetchall()
    assert [g[0] for g in got] == [clinician_grade(*c) for c in cases]
    face = [None, 0, 40, 49, 50, 100]
    grc = [None, -7, 0, 3, 4, 7]
    cases = list(itertools.product(face, face, grc))
    got = db.execute("select app.outcome_pro_responder(a, b, c) from unnest(%s::numeric[], %s::numeric[], "
                     "%s::numeric[]) as t(a, b, c)", [list(x) for x in zip(*cases)]).fetchall()
    assert [g[0] for g in got] == [patient_reported(*c) for c in cases]
    assert db.execute("select app.outcome_semg_responder(0.1), app.outcome_semg_responder(0.0999), "
                      "app.outcome_semg_responder(null)").fetchone() == (True, False, None)


def test_sql_intervals_equal_python(db: psycopg.Connection) -> None:
    # every x/n up to n = 60 in one query
    xs, ns = zip(*[(x, n) for n in range(0, 61) for x in range(0, n + 1)])
    got = db.execute("select research.wilson_low(x, n), research.wilson_high(x, n) "
                     "from unnest(%s::bigint[], %s::bigint[]) as t(x, n)", (list(xs), list(ns))).fetchall()
    for (lo, hi), x, n in zip(got, xs, ns):
        r = wilson_interval(x, n)
        assert lo == pytest.approx(r.low, abs=1e-12) and hi == pytest.approx(r.high, abs=1e-12), (x, n)
    for x, n in [(0, 0), (0, 1), (1, 1), (0, 20), (81, 263), (15, 148), (50, 100), (999, 1000)]:
        r = wilson_interval(x, n)
        lo, hi = db.execute("select research.wilson_low(%s, %s), research.wilson_high(%s, %s)", (x, n, x, n)).fetchone()
        assert (lo, hi) == (pytest.approx(r.low, abs=1e-12), pytest.approx(r.high, abs=1e-12)), (x, n)
    for c in [(56, 70, 48, 80), (9, 10, 3, 10), (5, 56, 0, 29), (0, 10, 0, 20), (10, 10, 0, 10), (3, 5, 0, 0)]:
        d = newcombe_difference(*c)
        lo, hi = db.execute("select research.newcombe_low(%s, %s, %s, %s), research.newcombe_high(%s, %s, %s, %s)",
                            (*c, *c)).fetchone()
        if d.low is None:
            assert (lo, hi) == (None, None)
        else:
            assert (lo, hi) == (pytest.approx(d.low, abs=1e-12), pytest.approx(d.high, abs=1e-12)), c


@pytest.fixture(scope="module")
def entered_cohort(settings: Settings):
    """150 simulated patients with their course, consent, grades and PROs in the test database."""
    clinic = f"cohort-{uuid.uuid4().hex[:6]}"
    patients = cohort(COHORT_PATIENTS, seed=14)
    # a per-run prefix keeps codes unique when the module runs twice against one database
    tag = uuid.uuid4().hex[:4].upper()
    patients = [dataclasses.replace(p, code=f"{p.code}-{tag}") for p in patients]
    with psycopg.connect(settings.db_dsn(), autocommit=True) as conn:
        ids = enter_cohort(conn, clinic, patients, dt.date.today() - dt.timedelta(days=40))
        site = site_of_clinic(conn, clinic)
    return clinic, site, patients, ids


def test_each_course_gets_the_python_verdicts(db: psycopg.Connection, entered_cohort) -> None:
    clinic, site, patients, ids = entered_cohort
    rows = {r[0]: r[1:] for r in db.execute(
        "select patient_id, therapy_type, sessions_done, semg_responder, grade_responder, pro_responder, "
        "hb_baseline, hb_latest, grc_latest from app.course_outcome where patient_id = any(%s)",
        (list(ids.values()),))}
    assert len(rows) == len(patients)
    for p in patients:
        therapy, sessions, semg, grade, pro, hb0, hb1, grc = rows[ids[p.code]]
        want = p.responder_by()
        assert therapy == p.therapy_type
        assert (grade, pro) == (want[Definition.GRADE], want[Definition.PRO]), p.code
        assert (hb0, hb1, grc) == (p.baseline.hb_grade, p.latest.hb_grade, p.latest.grc)
        assert sessions == 0 and semg is None  # no sessions streamed for this cohort: not evaluable


def test_outcomes_recover_the_true_rates(settings: Settings, db: psycopg.Connection, entered_cohort) -> None:
    clinic, site, patients, ids = entered_cohort
    table = summarise(course_results(db, [site]))
    expected = expected_rates(DEFAULT_EFFECTS, draws=1500)
    seen = 0
    for g in table.rates:
        if g.definition == Definition.SEMG:
            assert g.rate.n == 0
            continue
        assert g.patients == COHORT_PATIENTS // 3 and g.rate.n == g.patients
        truth = expected[g.therapy_type].by_definition[g.definition]
        assert g.rate.low <= truth <= g.rate.high, (g, truth)
        seen += 1
    assert seen == 6
    # the SQL view for the dashboard says the same (over every site, so compare this clinic's alone
    # only where no other test put courses: the counts include this cohort)
    sql = sql_rates(db)
    for g in table.rates:
        if g.rate.n:
            assert sql[(g.definition.value, g.therapy_type)][1] >= g.rate.n
    # the command prints the table for this clinic, each line within 80 columns
    from mimetic.cli import app

    out = CliRunner().invoke(app, ["--database", settings.pg_database, "outcomes", "--clinic", clinic],
                             env=settings.as_env())
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    micro = next(g for g in table.rates if g.definition == Definition.GRADE and g.therapy_type == "microcurrent")
    assert any(line.startswith("grade  microcurrent") and f"{100 * micro.rate.estimate:.1f}" in line
               and f"{100 * micro.rate.low:5.1f}" in line for line in lines), out.output


def test_research_views_count_only_consenting_patients(db: psycopg.Connection, entered_cohort) -> None:
    clinic, site, patients, ids = entered_cohort
    before = len(course_results(db, [site]))
    pid = ids[patients[0].code]
    with db.transaction():
        db.execute("update consent set withdrawn_on = current_date where patient_id = %s and purpose = 'research'",
                   (pid,))
        assert len(course_results(db, [site])) == before - 1
        raise psycopg.Rollback()
    assert len(course_results(db, [site])) == before


def test_baseline_and_follow_up_windows(db: psycopg.Connection) -> None:
    """Baseline = last assessment on or before the start; latest = last one up to 28 days after the end;
    the patient row's baseline grade stands in when no assessment precedes the course."""
    clinic = f"win-{uuid.uuid4().hex[:6]}"
    db.execute("insert into clinic (clinic_id, name) values (%s, 'w')", (clinic,))
    pid = db.execute("insert into patient (clinic_id, code, baseline_hb_grade) values (%s, %s, 5) "
                     "returning patient_id", (clinic, f"P-W{uuid.uuid4().hex[:6]}")).fetchone()[0]
    start = dt.date(2026, 3, 1)
    db.execute("insert into therapy_course (patient_id, therapy_type, start_date, end_date, planned_sessions, "
               "minutes_per_session) values (%s, 'massage', %s, %s, 10, 30)", (pid, start, start + dt.timedelta(9)))
    rows = [(start + dt.timedelta(5), 4, None), (start + dt.timedelta(9 + 28), 4, 60),
            (start + dt.timedelta(9 + 29), 1, 95)]  # the last is outside the follow-up window
    for day, hb, sb in rows:
        db.execute("insert into clinical_assessment (patient_id, assessed_on, assessor, hb_grade, sunnybrook) "
                   "values (%s, %s, 'x', %s, %s)", (pid, day, hb, sb))
    got = db.execute("select hb_baseline, hb_latest, sunnybrook_baseline, sunnybrook_latest, grade_responder "
                     "from app.course_outcome where patient_id = %s", (pid,)).fetchone()
    assert got == (5, 4, None, 60, True)  # V (patient row) -> IV; Sunnybrook has no baseline
    db.execute("insert into clinical_assessment (patient_id, assessed_on, assessor, hb_grade, sunnybrook) "
               "values (%s, %s, 'x', 3, 55)", (pid, start - dt.timedelta(3)))
    got = db.execute("select hb_baseline, hb_latest, sunnybrook_baseline, sunnybrook_latest, grade_responder "
                     "from app.course_outcome where patient_id = %s", (pid,)).fetchone()
    assert got == (3, 4, 55, 60, False)  # the assessment before the course is the baseline now


def test_sql_semg_definition_equals_python(db: psycopg.Connection) -> None:
    """Session analyses of two courses (with invalid sessions, short and too-short muscles, sessions
    outside the courses and an open one): the sEMG inputs and verdicts of app.course_outcome per course
    and of the clinic view patient_responder (latest course; every session without a course) are
    semg_symmetry's."""
    import numpy as np

    from outcomes.definitions import semg_symmetry

    rng = np.random.default_rng(7)
    clinic = f"semg-{uuid.uuid4().hex[:6]}"
    db.execute("insert into clinic (clinic_id, name) values (%s, 's')", (clinic,))
    pid, pid_free = (db.execute("insert into patient (clinic_id, code) values (%s, %s) returning patient_id",
                                (clinic, f"P-S{uuid.uuid4().hex[:6]}")).fetchone()[0] for _ in range(2))
    start = dt.date(2026, 5, 4)
    course = {}
    for name, first, last in (("early", -3, -2), ("main", 0, 11)):
        course[name] = db.execute(
            "insert into therapy_course (patient_id, therapy_type, start_date, end_date, planned_sessions, "
            "minutes_per_session, current_limit_ua) values (%s, 'microcurrent', %s, %s, 12, 30, 300) "
            "returning course_id", (pid, start + dt.timedelta(days=first), start + dt.timedelta(days=last))
        ).fetchone()[0]
    muscles = ("zygomaticus", "frontalis", "mentalis", "orbicularis_oris")
    want: dict[str, dict[str, list[float | None]]] = {k: {m: [] for m in muscles} for k in ("early", "main", "free")}
    # day -1 and day 12 lie outside both courses; day 5 is still open: none of them counts
    for day in range(-3, 13):
        for patient, key in ((pid, "main" if day >= 0 else "early"), (pid_free, "free")):
            sid = uuid.uuid4()
            status = "open" if day == 5 else "ended"
            t0 = dt.datetime.combine(start + dt.timedelta(days=day), dt.time(9), dt.timezone.utc)
            db.execute("insert into session_summary (session_id, device_id, patient_id, therapy_type, started_at, "
                       "ended_at, status, minutes, computed_at) values (%s, 'semg-dev', %s, 'microcurrent', %s, "
                       "%s, %s, 30, now())", (sid, patient, t0, t0 + dt.timedelta(minutes=30), status))
            counted = status == "ended" and (key == "free" or day not in (-1, 12))
            for m in muscles:
                ai = None if rng.random() < 0.2 else float(np.float32(rng.uniform(-0.8, 0.8) * (1 - day / 20)))
                if m == "mentalis" and day != 2:
                    ai = None  # one valid session: this muscle does not count
                if m == "orbicularis_oris" and day > 3:
                    ai = math.nan if day == 6 else None  # 3 or 4 valid sessions: a short muscle, k = 1 or 2
                db.execute("insert into session_muscle_summary (session_id, muscle, ai) values (%s, %s, %s)",
                           (sid, m, ai))
                if counted:
                    want[key][m].append(ai)
    seen_k = set()
    for key in ("early", "main"):
        py = semg_symmetry(want[key])
        got = db.execute("select sessions_done, muscles, first_abs_ai, last_abs_ai, abs_ai_improvement, "
                         "semg_responder from app.course_outcome where course_id = %s", (course[key],)).fetchone()
        assert got[0] == {"early": 2, "main": 11}[key] and got[1] == py.muscles, key
        assert got[2:5] == (pytest.approx(py.first_abs_ai, abs=1e-9), pytest.approx(py.last_abs_ai, abs=1e-9),
                            pytest.approx(py.improvement, abs=1e-9)), key
        assert got[5] is py.responder
        seen_k |= {k for (k,) in db.execute("select end_sessions from app.course_muscle_symmetry "
                                            "where course_id = %s and valid_sessions >= 2", (course[key],))}
    assert want["main"]["orbicularis_oris"].count(None) < 11 and {1, 3} <= seen_k
    assert semg_symmetry(want["main"]).muscles == 3
    # the clinic view: the latest course for a patient with courses, every session for one without
    for patient, key in ((pid, "main"), (pid_free, "free")):
        py = semg_symmetry(want[key])
        got = db.execute("select sessions, muscles, first_abs_ai, last_abs_ai, abs_ai_improvement, responder, "
                         "course_id from patient_responder where patient_id = %s", (patient,)).fetchone()
        assert got[0] == {"main": 11, "free": 15}[key] and got[1] == py.muscles == 3, key
        assert [float(x) for x in got[2:5]] == pytest.approx([py.first_abs_ai, py.last_abs_ai, py.improvement],
                                                             abs=6e-4), key
        assert got[5] is py.responder and got[6] == (course["main"] if key == "main" else None)
    # the researchers' per-patient view says the same once the patients consent to research
    db.execute("insert into consent (patient_id, purpose, given_on) values (%s, 'research', %s), "
               "(%s, 'research', %s)", (pid, start, pid_free, start))
    for patient, key in ((pid, "main"), (pid_free, "free")):
        py = semg_symmetry(want[key])
        got = db.execute("select r.sessions, r.first_abs_ai, r.last_abs_ai, r.abs_ai_improvement, r.responder "
                         "from research.responder r join app.patient_pseudo pp using (research_id) "
                         "where pp.patient_id = %s", (patient,)).fetchone()
        assert got[0] == {"main": 11, "free": 15}[key] and got[4] is py.responder, key
        assert [float(x) for x in got[1:4]] == pytest.approx([py.first_abs_ai, py.last_abs_ai, py.improvement],
                                                             abs=6e-4), key

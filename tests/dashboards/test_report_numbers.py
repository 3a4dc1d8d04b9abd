"""The progress report's numbers against the database: every figure of the summary is recomputed
here from the base tables with SQL and plain Python (not through the report's views or code) and
compared with the report's data model and with the sentences it prints."""

from __future__ import annotations

import math
import re
from collections import defaultdict
from zoneinfo import ZoneInfo

import psycopg
import pytest

from dashboards import report
from dashboards.report.text import plural
from outcomes.definitions import semg_symmetry

from .conftest import Filled

pytestmark = pytest.mark.stack

SESSIONS = """
select s.session_id::text, row_number() over (order by s.started_at, s.session_id) as n, s.discomfort,
       s.skin_reaction, s.started_at, s.ended_at, s.device_id
from session_summary s join patient p on p.patient_id = s.patient_id
where p.code = %s and s.status in ('ended', 'timed_out')
"""


def _truth(conn: psycopg.Connection, code: str) -> dict:
    sessions = conn.execute(SESSIONS, (code,)).fetchall()
    number = {sid: n for sid, n, *_ in sessions}
    side = conn.execute("select affected_side from patient where code = %s", (code,)).fetchone()[0]
    per: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
    for sid, muscle, ai, left, right in conn.execute(
            "select session_id::text, muscle, ai, left_uv, right_uv from session_muscle_summary "
            "where session_id = any(%s::uuid[]) and ai is not null", (list(number),)):
        aff, hea = (left, right) if side == "L" else (right, left)
        per[muscle].append((number[sid], float(ai), 100.0 * aff / hea))
    pairs = []
    for pts in per.values():
        pts.sort()
        if len(pts) >= 2:
            pairs.append((pts[0], pts[-1]))
    syn = defaultdict(int)
    for task, muscle in conn.execute(
            "select target_task, muscle from session_synkinesis where session_id = any(%s::uuid[]) and flag",
            (list(number),)):
        syn[(task, muscle)] += 1
    over = conn.execute(
        "select count(distinct a.alert_id) from alert a join session_summary s on s.device_id = a.device_id "
        "and a.raised_at < s.ended_at and coalesce(a.cleared_at, 'infinity') > s.started_at "
        "where s.session_id = any(%s::uuid[]) and a.alert_type = 'over_current'", (list(number),)).fetchone()[0]
    # the latest course and the valid AIs of its sessions (start day in the clinic's zone within its dates)
    course = conn.execute(
        "select c.course_id, c.start_date, c.end_date, k.timezone from therapy_course c "
        "join patient p on p.patient_id = c.patient_id join clinic k on k.clinic_id = p.clinic_id "
        "where p.code = %s order by c.start_date desc, c.course_id desc limit 1", (code,)).fetchone()
    in_course = set(number)
    if course is not None:
        in_course = {sid for sid, _n, _d, _sk, started, *_ in sessions
                     if course[1] <= started.astimezone(ZoneInfo(course[3])).date()
                     and (course[2] is None or started.astimezone(ZoneInfo(course[3])).date() <= course[2])}
    course_ai: dict[str, list[float]] = defaultdict(list)
    for muscle, ai in conn.execute(
            "select m.muscle, m.ai from session_muscle_summary m join session_summary s using (session_id) "
            "where m.session_id = any(%s::uuid[]) and m.ai is not null order by s.started_at, s.session_id",
            (list(in_course),)):
        course_ai[muscle].append(float(ai))
    disc = [d for _s, _n, d, *_ in sessions if d is not None]
    return {"n": len(sessions), "pairs": pairs, "course_ai": dict(course_ai),
            "course_id": None if course is None else course[0], "syn": dict(syn), "over_current": over, "discomfort": disc,
            "skin": sorted(n for _s, n, _d, skin, *_ in sessions if skin not in (None, "none"))}


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def test_report_numbers_match_the_database(filled: Filled) -> None:
    checked_first_not_1 = False
    checked_responder = 0
    with psycopg.connect(filled.settings.db_dsn()) as conn:
        for code in filled.codes:
            t = _truth(conn, code)
            d = report.load(conn, code, report.Actor(name="report-test", channel="cli"))
            c = d.comparison
            lines = [ln.text for ln in report.summary(d)]
            text = "\n".join(lines)
            assert len(d.sessions) == t["n"]
            # first against latest: the same muscles, sessions and values
            assert len(c.muscles) == len(t["pairs"])
            want = sorted((f[0], lt[0], round(f[1], 5), round(lt[1], 5)) for f, lt in t["pairs"])
            got = sorted((m.first.session_number, m.latest.session_number, round(m.first.ai, 5),
                          round(m.latest.ai, 5)) for m in c.muscles)
            assert got == want
            for m in c.muscles:
                f, lt = next((f, lt) for f, lt in t["pairs"] if f[0] == m.first.session_number
                             and math.isclose(f[1], m.first.ai, abs_tol=1e-6))
                assert math.isclose(m.first.pct, f[2], rel_tol=1e-4)
                assert math.isclose(m.latest.pct, lt[2], rel_tol=1e-4)
            checked_first_not_1 |= any(f[0] != 1 for f, _l in t["pairs"])
            if t["pairs"]:
                first_pct = _mean([f[2] for f, _l in t["pairs"]])
                last_pct = _mean([lt[2] for _f, lt in t["pairs"]])
                first_ai = _mean([abs(f[1]) for f, _l in t["pairs"]])
                last_ai = _mean([abs(lt[1]) for _f, lt in t["pairs"]])
                assert math.isclose(c.first_pct, first_pct, rel_tol=1e-4)
                assert math.isclose(c.latest_abs_ai, last_ai, rel_tol=1e-5)
                sym = next(ln for ln in lines if ln.startswith("Symmetry"))
                assert f"works at {last_pct:.0f}% of the healthy side" in sym and f"against {first_pct:.0f}%" in sym
                assert f"({last_pct - first_pct:+.0f} percentage points)" in sym
                for (f, _l) in t["pairs"]:
                    if f[0] != 1:
                        assert f"from session {f[0]} (session 1:" in sym
            # the responder line: the outcomes' definition over the latest course's valid sessions
            want = semg_symmetry(t["course_ai"])
            assert d.semg == want
            resp = next(ln for ln in lines if ln.startswith("sEMG responder"))
            if want.responder is None:
                assert "not yet evaluable" in resp
            else:
                checked_responder += 1
                assert f"{want.first_abs_ai:.2f} → {want.last_abs_ai:.2f}" in resp
                assert f"{abs(want.improvement):.2f}" in resp and plural(want.muscles, "muscle") in resp
                assert ("rule met" in resp) == (want.improvement >= 0.10)
            # the clinic dashboard's responder view (migration 0018) says the same
            view = conn.execute("select first_abs_ai, last_abs_ai, abs_ai_improvement, responder, muscles, "
                                "course_id from patient_responder where patient_code = %s", (code,)).fetchone()
            assert view[5] == t["course_id"] and view[4] == want.muscles
            if want.responder is not None:
                assert [float(x) for x in view[:3]] == pytest.approx(
                    [want.first_abs_ai, want.last_abs_ai, want.improvement], abs=6e-4)
            assert view[3] == want.responder
            # synkinesis: each flagged pair with its count of flagged sessions
            for (task, muscle), k in t["syn"].items():
                pair = next(p for p in d.synkinesis if (p.target_task, p.muscle) == (task, muscle))
                assert sum(pair.flagged.values()) == k
            # patient comfort and device lines
            comfort = next(ln for ln in lines if ln.startswith("Patient comfort"))
            if t["discomfort"]:
                assert f"discomfort {_mean(t['discomfort']):.1f}/10 on average, highest {max(t['discomfort'])}" \
                    in comfort
                assert f"reported after {len(t['discomfort'])} of {plural(t['n'], 'session')}" in comfort
            if t["skin"]:
                assert "skin reaction after session" in comfort and str(t["skin"][0]) in comfort
            device = next(ln for ln in lines if ln.startswith("Device and stimulation"))
            assert (f"{plural(t['over_current'], 'over-current alert')}" in device) if t["over_current"] \
                else "no over-current" in device
            assert "skin" not in device and "discomfort" not in device
            assert not re.search(r"\b1 (days|sessions|muscles|assessments|alerts)\b", text), text
    assert checked_first_not_1, "the simulated clinic should have a muscle whose session 1 is not usable"
    assert checked_responder, "the simulated clinic should have an evaluable sEMG responder verdict"


def test_report_grades_pros_and_course_plan_match_the_database(filled: Filled) -> None:
    """Grades and PROs entered through the clinical service, and the course plan, appear in the report
    with the values and order of the database."""
    from datetime import datetime, timedelta, timezone

    from clinical import model as M
    from clinical import service as S

    code = filled.codes[2]
    actor = S.Actor(name="report-test", channel="cli")
    today = datetime.now(timezone.utc)
    with psycopg.connect(filled.settings.db_dsn()) as conn:
        if not conn.execute("select 1 from clinical_assessment a join patient p using (patient_id) "
                            "where p.code = %s", (code,)).fetchone():
            for days, hb, sb in ((3, 4, 38), (1, 3, 55)):
                S.add_assessment(conn, actor, code, M.AssessmentIn(
                    assessed_on=(today - timedelta(days=days)).date(), assessor="Dr Test", hb_grade=hb,
                    sunnybrook=sb))
            for days, inst, score in ((3, "face", 42.0), (1, "face", 61.5), (1, "grc", 3.0)):
                S.add_pro(conn, actor, code, M.ProIn(instrument=inst, score=score,
                                                     answered_at=today - timedelta(days=days, hours=1)))
        d = report.load(conn, code, actor)
        grades = conn.execute("select a.assessed_on, a.hb_grade, a.sunnybrook from clinical_assessment a "
                              "join patient p using (patient_id) where p.code = %s order by a.assessed_on",
                              (code,)).fetchall()
        face = [float(x) for (x,) in conn.execute(
            "select r.score from patient_reported_outcome r join patient p using (patient_id) "
            "where p.code = %s and r.instrument = 'face' order by r.answered_at", (code,))]
        course = conn.execute(
            "select c.course_id, c.therapy_type, c.planned_sessions, c.minutes_per_session, c.start_date "
            "from therapy_course c join patient p using (patient_id) where p.code = %s "
            "order by c.start_date desc limit 1", (code,)).fetchone()
        done = conn.execute(
            "select count(*), coalesce(sum(s.minutes), 0) from session_summary s join patient p using (patient_id) "
            "join clinic k on k.clinic_id = p.clinic_id where p.code = %s and s.status in ('ended', 'timed_out') "
            "and s.therapy_type = %s and (s.started_at at time zone k.timezone)::date >= %s",
            (code, course[1], course[4])).fetchone()
    assert [(g.assessed_on, g.hb_grade, g.sunnybrook) for g in d.clinical.grades] == grades
    lines = [ln.text for ln in report.summary(d)]
    grade_line = next(ln for ln in lines if ln.startswith("Clinician grades"))
    hb_roman = {1: "I", 2: "II", 3: "III", 4: "IV", 5: "V", 6: "VI"}
    assert f"House-Brackmann {hb_roman[grades[0][1]]} (" in grade_line
    assert f"→ {hb_roman[grades[-1][1]]} (" in grade_line
    assert f"Sunnybrook {grades[0][2]} → {grades[-1][2]} of 100" in grade_line
    pro_line = next(ln for ln in lines if ln.startswith("Patient-reported"))
    assert f"FaCE {face[0]:g} → {face[-1]:g} (0 to 100, higher is better)" in pro_line
    adh = next(ln for ln in lines if ln.startswith("Adherence"))
    c = d.clinical.courses[-1]
    assert (c.course_id, c.planned_sessions, c.minutes_per_session) == (course[0], course[2], course[3])
    assert c.sessions_done == done[0]
    assert f"{done[0]} of {course[2]} {course[1].replace('_', ' ')} sessions done" in adh

"""The progress report's numbers against the database: every figure of the summary is recomputed
here from the base tables with SQL and plain Python (not through the report's views or code) and
compared with the report's data model and with the sentences it prints."""

from __future__ import annotations

import math
import re
from collections import defaultdict

import psycopg
import pytest

from dashboards import report
from dashboards.report.text import plural

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
    disc = [d for _s, _n, d, *_ in sessions if d is not None]
    return {"n": len(sessions), "pairs": pairs, "syn": dict(syn), "over_current": over, "discomfort": disc,
            "skin": sorted(n for _s, n, _d, skin, *_ in sessions if skin not in (None, "none"))}


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def test_report_numbers_match_the_database(filled: Filled) -> None:
    checked_first_not_1 = False
    with psycopg.connect(filled.settings.db_dsn()) as conn:
        for code in filled.codes:
            t = _truth(conn, code)
            d = report.load(conn, code)
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
                resp = next(ln for ln in lines if ln.startswith("sEMG responder"))
                assert f"{first_ai:.2f} → {last_ai:.2f}" in resp
                assert f"{abs(first_ai - last_ai):.2f}" in resp
                assert ("rule met" in resp) == (first_ai - last_ai >= 0.10)
                for (f, _l) in t["pairs"]:
                    if f[0] != 1:
                        assert f"from session {f[0]} (session 1:" in sym
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

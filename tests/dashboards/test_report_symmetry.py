"""The report's one symmetry measure, its first-against-latest comparison and the sessions of its
responder verdict (pure, no stack)."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dashboards.report.symmetry import (Point, ai_from_ratio, compare, pct_of_healthy, responder_series,
                                        semg_responder, trend_per_session)
from mimetic.demo_results import truth_outcome
from outcomes.definitions import semg_symmetry
from processors.measures import ratio_from_ai

ais = st.floats(-0.95, 0.95, allow_nan=False)


@given(ais, st.sampled_from("LR"))
def test_pct_is_the_measures_ratio_and_its_ai_round_trips(ai: float, side: str) -> None:
    pct = pct_of_healthy(ai, side)
    assert math.isclose(pct, float(ratio_from_ai(ai, side)) * 100, rel_tol=1e-9)
    assert math.isclose(ai_from_ratio(pct / 100), abs(ai), abs_tol=1e-9)


@given(ais)
def test_pct_without_a_side_is_the_weaker_in_pct_of_the_stronger(ai: float) -> None:
    assert pct_of_healthy(ai, None) <= 100 + 1e-9
    assert math.isclose(pct_of_healthy(ai, None), min(pct_of_healthy(ai, "L"), pct_of_healthy(ai, "R")))


series = st.dictionaries(
    st.sampled_from(["frontalis", "zygomaticus", "orbicularis_oris", "orbicularis_oculi"]),
    st.lists(st.tuples(st.integers(1, 12), st.one_of(ais, st.just(math.nan))), max_size=8,
             unique_by=lambda t: t[0]), max_size=4)


@settings(max_examples=150, deadline=None)
@given(series)
def test_first_latest_mean_and_improvement_add_up(raw: dict) -> None:
    pts = {m: [Point(n, a, pct_of_healthy(a, "L") if math.isfinite(a) else math.nan) for n, a in xs]
           for m, xs in raw.items()}
    c = compare(pts, 12)
    for mc in c.muscles:
        valid = sorted(n for n, a in raw[mc.muscle] if math.isfinite(a))
        assert (mc.first.session_number, mc.latest.session_number) == (valid[0], valid[-1])
    assert {mc.muscle for mc in c.muscles} == {m for m, xs in raw.items()
                                               if sum(math.isfinite(a) for _n, a in xs) >= 2}
    if c.muscles:
        diffs = [abs(mc.first.ai) - abs(mc.latest.ai) for mc in c.muscles]
        assert math.isclose(c.abs_ai_improvement, float(np.mean(diffs)), abs_tol=1e-12)
        assert math.isclose(c.first_abs_ai - c.latest_abs_ai, c.abs_ai_improvement, abs_tol=1e-12)
    else:
        assert c.first_abs_ai is None
    # the responder verdict over every session is the outcomes' definition of the valid AIs in order
    every = responder_series(pts, {}, None)
    assert semg_responder(every) == semg_symmetry({m: [a for _n, a in sorted(xs)] for m, xs in raw.items()})


def test_a_muscle_whose_session_1_is_invalid_starts_at_session_2() -> None:
    c = compare({"zygomaticus": [Point(1, math.nan, math.nan), Point(2, 0.5, 300.0), Point(4, 0.2, 150.0)],
                 "frontalis": [Point(3, 0.4, 233.0)]}, 4)
    assert [(m.muscle, m.first.session_number, m.latest.session_number) for m in c.muscles] == \
        [("zygomaticus", 2, 4)]
    assert math.isclose(c.abs_ai_improvement, 0.3)


def test_trend_is_the_least_squares_slope() -> None:
    pts = [Point(n, 0.0, 30.0 + 9.3 * n) for n in (1, 2, 4)]
    assert math.isclose(trend_per_session(pts), 9.3)
    assert trend_per_session(pts[:2]) is None


def test_responder_series_keeps_the_course_window() -> None:
    days = {n: date(2026, 3, n) for n in range(1, 7)}
    pts = {"zygomaticus": [Point(n, 0.1 * n, math.nan) for n in range(1, 7)] + [Point(7, 0.9, math.nan)],
           "frontalis": [Point(1, 0.5, math.nan), Point(2, math.nan, math.nan)]}
    got = responder_series(pts, days, (date(2026, 3, 3), date(2026, 3, 5)))
    assert {m: [p.session_number for p in v] for m, v in got.items()} == {"zygomaticus": [3, 4, 5]}
    open_course = responder_series(pts, days, (date(2026, 3, 2), None))
    assert [p.session_number for p in open_course["zygomaticus"]] == [2, 3, 4, 5, 6]
    # 5 valid sessions: k = 2, (0.2 + 0.3) / 2 against (0.5 + 0.6) / 2
    o = semg_responder(open_course)
    assert o.muscles == 1 and math.isclose(o.improvement, -0.3) and o.responder is False


def test_demo_truth_goes_through_the_same_definition() -> None:
    sessions = [{"muscles": {"zygomaticus": {"ai": -0.6}, "frontalis": {"ai": -0.5}}},
                {"muscles": {"zygomaticus": {"ai": -0.3}, "frontalis": {"ai": None}}},
                {"muscles": {"zygomaticus": {"ai": -0.2}, "frontalis": {"ai": -0.1}}},
                {"muscles": {"zygomaticus": {"ai": -0.1}, "frontalis": {"ai": -0.1}}}]
    # at the measurement's muscles and sessions: zygomaticus measured in sessions 2-4, frontalis in 1 only
    used = {"zygomaticus": [Point(n, -0.3, 50.0) for n in (2, 3, 4)], "frontalis": [Point(1, -0.4, 50.0)]}
    t = truth_outcome(sessions, used)
    assert t.muscles == 1 and math.isclose(t.first_abs_ai, 0.3) and math.isclose(t.last_abs_ai, 0.1)
    assert t.responder is True

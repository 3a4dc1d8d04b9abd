"""The report's one symmetry measure and its first-against-latest comparison (pure, no stack)."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dashboards.report.symmetry import (RESPONDER_DROP_AI, Point, ai_from_ratio, compare, pct_of_healthy,
                                        trend_per_session)
from mimetic.demo_results import truth_comparison
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
        assert c.responder == (float(np.mean(diffs)) >= RESPONDER_DROP_AI - 1e-12)
    else:
        assert c.responder is None and c.first_abs_ai is None


def test_a_muscle_whose_session_1_is_invalid_starts_at_session_2() -> None:
    c = compare({"zygomaticus": [Point(1, math.nan, math.nan), Point(2, 0.5, 300.0), Point(4, 0.2, 150.0)],
                 "frontalis": [Point(3, 0.4, 233.0)]}, 4)
    assert [(m.muscle, m.first.session_number, m.latest.session_number) for m in c.muscles] == \
        [("zygomaticus", 2, 4)]
    assert math.isclose(c.abs_ai_improvement, 0.3) and c.responder is True


def test_trend_is_the_least_squares_slope() -> None:
    pts = [Point(n, 0.0, 30.0 + 9.3 * n) for n in (1, 2, 4)]
    assert math.isclose(trend_per_session(pts), 9.3)
    assert trend_per_session(pts[:2]) is None


def test_demo_truth_goes_through_the_same_comparison() -> None:
    sessions = [{"muscles": {"zygomaticus": {"ai": -0.6}, "frontalis": {"ai": -0.5}}},
                {"muscles": {"zygomaticus": {"ai": -0.3}, "frontalis": {"ai": None}}},
                {"muscles": {"zygomaticus": {"ai": -0.2}, "frontalis": {"ai": -0.1}}}]
    t = truth_comparison(sessions, "L")
    assert math.isclose(t.first_abs_ai, 0.55) and math.isclose(t.latest_abs_ai, 0.15)
    assert t.responder is True
    # at the measurement's muscles and sessions: zygomaticus measured from session 2 only
    measured = compare({"zygomaticus": [Point(2, -0.35, 48.0), Point(3, -0.25, 60.0)]}, 3)
    like = truth_comparison(sessions, "L", like=measured)
    assert [(m.muscle, m.first.session_number, m.latest.session_number) for m in like.muscles] == \
        [("zygomaticus", 2, 3)]
    assert math.isclose(like.first_abs_ai, 0.3) and math.isclose(like.latest_abs_ai, 0.2)

"""The clinical measure definitions against closed-form truth, plus their invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

from processors.measures import (activation_features, activity_level_uv, affected_ratio, asymmetry_index,
                                 mvc_reference_uv, onset_latency_s, pct_mvc, ratio_from_ai, rest_level_uv,
                                 synkinesis_flag, synkinesis_index, task_of, TaskSpan, window_level_uv)
from processors.measures.fatigue import fatigue_slope, frequency_track

levels = st.floats(min_value=0.0, max_value=1e4, allow_nan=False)
positive = st.floats(min_value=1e-3, max_value=1e4, allow_nan=False)


def test_level_removes_rest_in_the_power_domain() -> None:
    # an RMS envelope of muscle activity A over rest noise r reads sqrt(A^2 + r^2)
    a_uv, r_uv = 40.0, 4.0
    env = np.full(100, math.hypot(a_uv, r_uv))
    assert window_level_uv(env, r_uv) == pytest.approx(a_uv)
    # half the window at rest, half active: the RMS of the activity over the window
    env2 = np.r_[np.full(50, r_uv), np.full(50, math.hypot(a_uv, r_uv))]
    assert window_level_uv(env2, r_uv) == pytest.approx(a_uv / math.sqrt(2))
    assert rest_level_uv(np.full(10, r_uv)) == pytest.approx(r_uv)
    assert window_level_uv(np.full(10, r_uv), r_uv) == 0.0  # rest only: no activity
    assert window_level_uv(np.full(10, 2.0), r_uv) == 0.0  # below rest: floored, never imaginary
    assert math.isnan(window_level_uv(np.array([]), r_uv))


def test_asymmetry_and_ratio_closed_form() -> None:
    # left 30 µV of activity, right 90 µV, rest 5 µV on both: AI = -60/120 = -0.5, L affected: 1/3
    left = window_level_uv(np.full(40, math.hypot(30.0, 5.0)), 5.0)
    right = window_level_uv(np.full(40, math.hypot(90.0, 5.0)), 5.0)
    assert float(asymmetry_index(left, right)) == pytest.approx(-0.5)
    assert float(affected_ratio(left, right, "L")) == pytest.approx(1 / 3)
    assert float(affected_ratio(left, right, "R")) == pytest.approx(3.0)
    # raw amplitudes would have said (30.41 - 90.14) / 120.55 = -0.495: rest pulls towards 0


def test_silence_is_undefined_not_symmetric() -> None:
    assert math.isnan(asymmetry_index(0.0, 0.0))
    assert math.isnan(asymmetry_index(1.0, 2.0, min_level_uv=3.0))
    assert float(asymmetry_index(10.0, 0.0)) == 1.0
    assert math.isnan(affected_ratio(0.0, 10.0, "R"))  # healthy side silent
    assert float(affected_ratio(0.0, 10.0, "L")) == 0.0
    assert math.isnan(synkinesis_index(0.0, 0.0)) and not synkinesis_flag(float("nan"))


@given(levels, levels)
def test_ai_is_antisymmetric_and_bounded(left: float, right: float) -> None:
    a, b = float(asymmetry_index(left, right)), float(asymmetry_index(right, left))
    if left + right > 0:
        assert -1.0 <= a <= 1.0
        assert a == pytest.approx(-b, abs=1e-12)
    else:
        assert math.isnan(a) and math.isnan(b)


@given(levels, positive, st.sampled_from(["L", "R"]))
def test_ratio_consistent_with_ai(aff: float, healthy: float, side: str) -> None:
    left, right = (aff, healthy) if side == "L" else (healthy, aff)
    ratio = float(affected_ratio(left, right, side))
    assert ratio >= 0 and ratio == pytest.approx(aff / healthy)
    assert float(ratio_from_ai(asymmetry_index(left, right), side)) == pytest.approx(ratio, rel=1e-9, abs=1e-9)


@given(positive, positive, st.floats(min_value=1e-2, max_value=1e3))
def test_ai_is_scale_invariant(left: float, right: float, k: float) -> None:
    assert float(asymmetry_index(k * left, k * right)) == pytest.approx(float(asymmetry_index(left, right)),
                                                                         abs=1e-9)


@given(positive, positive, st.sampled_from(["L", "R", None]))
def test_pct_mvc_keeps_the_asymmetry(mvc_l: float, mvc_r: float, affected: str | None) -> None:
    ref = mvc_reference_uv(mvc_l, mvc_r, affected)
    if affected is None:
        assert ref == max(mvc_l, mvc_r)
    left, right = 0.5 * mvc_l, 0.5 * mvc_r
    pl, pr = float(pct_mvc(left, ref)), float(pct_mvc(right, ref))
    assert float(asymmetry_index(pl, pr)) == pytest.approx(float(asymmetry_index(left, right)), abs=1e-9)


def test_pct_mvc_closed_form() -> None:
    # healthy R reaches 200 µV at MVC, affected L 50 µV; in a smile L reads 40, R 100
    ref = mvc_reference_uv(50.0, 200.0, "L")
    assert ref == 200.0
    assert float(pct_mvc(40.0, ref)) == pytest.approx(20.0) and float(pct_mvc(100.0, ref)) == pytest.approx(50.0)
    assert math.isnan(pct_mvc(40.0, 0.0))


def test_synkinesis_closed_form() -> None:
    # oculi during a smile: 30 µV of activity on the affected side, 10 on the healthy side
    s = float(synkinesis_index(30.0, 10.0))
    assert s == pytest.approx(0.5) and synkinesis_flag(s) and not synkinesis_flag(0.2)


def test_activation_features_and_task_latency() -> None:
    t = np.arange(0, 5, 0.01)
    env = np.where((t >= 1.3) & (t < 2.3), 100.0, 5.0)
    f = activation_features(env, t, 1.3, 2.3)
    assert f.duration_s == pytest.approx(1.0) and f.peak_uv == 100.0 and f.mean_uv == pytest.approx(100.0)
    assert f.area_uv_s == pytest.approx(100.0, rel=0.02)
    spans = [TaskSpan("smile", 1, 1.0, 3.0), TaskSpan("smile", 2, 5.0, 7.0)]
    span = task_of(1.3, spans)
    assert span == spans[0] and onset_latency_s(1.3, span) == pytest.approx(0.3)
    assert task_of(4.0, spans) is None and onset_latency_s(4.0, None) is None
    assert task_of(3.05, spans) is None and task_of(3.05, spans, grace_s=0.1) == spans[0]


def test_fatigue_slope_of_a_known_downward_shift() -> None:
    """A tone whose frequency falls linearly from 120 to 90 Hz over 10 s: median frequency slope -3 Hz/s."""
    fs = 2000.0
    t = np.arange(int(10 * fs)) / fs
    f_hz = 120.0 - 3.0 * t
    x = np.sin(2 * np.pi * np.cumsum(f_hz) / fs)
    track = frequency_track(x, fs)
    slope = fatigue_slope(track.times_s, track.median_hz[0])
    assert slope.slope_hz_per_s == pytest.approx(-3.0, rel=0.05)
    assert slope.relative_per_min < 0

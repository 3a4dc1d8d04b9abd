"""The three responder definitions: closed-form cases and invariants."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, strategies as st

from outcomes.definitions import clinician_grade, patient_reported, semg_end_sessions, semg_symmetry

ai = st.floats(min_value=-1.0, max_value=1.0, allow_nan=False)


def test_semg_means_three_sessions_at_each_end() -> None:
    # zygomaticus: first three |AI| 0.5, 0.4, 0.6 (mean 0.5), last three 0.2, 0.1, 0.0 (mean 0.1)
    out = semg_symmetry({"zygomaticus": [0.5, -0.4, 0.6, 0.3, 0.2, -0.1, 0.0]})
    assert out.muscles == 1
    assert out.first_abs_ai == pytest.approx(0.5) and out.last_abs_ai == pytest.approx(0.1)
    assert out.improvement == pytest.approx(0.4) and out.responder is True


def test_semg_skips_invalid_sessions_and_short_muscles() -> None:
    # None / NaN sessions (electrode faults) are left out, so "first" is the first VALID session;
    # a muscle with fewer than 2 valid sessions does not count
    out = semg_symmetry({"frontalis": [None, math.nan, 0.3, 0.3, 0.3, 0.25, 0.25, 0.25],
                         "mentalis": [0.9, None, math.nan]})
    assert out.muscles == 1 and out.improvement == pytest.approx(0.05) and out.responder is False
    assert semg_symmetry({"mentalis": [0.9]}).responder is None
    assert semg_symmetry({"mentalis": [None, 0.4, math.nan]}).muscles == 0
    assert semg_symmetry({}).muscles == 0


@pytest.mark.parametrize(("n", "k"), [(0, 0), (1, 0), (2, 1), (3, 1), (4, 2), (5, 2), (6, 3), (7, 3), (40, 3)])
def test_semg_end_size_is_min_3_half(n: int, k: int) -> None:
    assert semg_end_sessions(n) == k


def test_semg_short_courses_use_their_ends() -> None:
    # 2 sessions: first vs last; 3: the middle one is left out; 4 and 5: two at each end
    assert semg_symmetry({"m": [0.5, 0.3]}).improvement == pytest.approx(0.2)
    assert semg_symmetry({"m": [0.5, 0.9, 0.3]}).improvement == pytest.approx(0.2)
    out = semg_symmetry({"m": [0.6, 0.4, 0.35, 0.25], "n": [0.5, 0.5, 0.9, 0.4, 0.4]})
    assert out.muscles == 2
    assert out.first_abs_ai == pytest.approx((0.5 + 0.5) / 2) and out.last_abs_ai == pytest.approx((0.3 + 0.4) / 2)
    assert out.improvement == pytest.approx(0.15) and out.responder is True


@given(st.lists(ai, min_size=2, max_size=20))
def test_semg_ends_never_overlap(a: list[float]) -> None:
    k = semg_end_sessions(len(a))
    assert 1 <= k <= 3 and 2 * k <= len(a)
    out = semg_symmetry({"m": a})
    assert out.improvement == pytest.approx(out.first_abs_ai - out.last_abs_ai, abs=1e-12)


def test_semg_threshold_is_inclusive() -> None:
    assert semg_symmetry({"m": [0.3] * 3 + [0.2] * 3}).responder is True
    assert semg_symmetry({"m": [0.3] * 3 + [0.2001] * 3}).responder is False


@given(st.lists(ai, min_size=2, max_size=20), st.lists(ai, min_size=2, max_size=20))
def test_semg_improvement_is_the_mean_of_muscle_changes(a: list[float], b: list[float]) -> None:
    both = semg_symmetry({"m1": a, "m2": b})
    one, two = semg_symmetry({"m1": a}), semg_symmetry({"m2": b})
    assert both.improvement == pytest.approx((one.improvement + two.improvement) / 2, abs=1e-12)
    assert -1.0 <= both.improvement <= 1.0


@given(st.lists(ai, min_size=2, max_size=20))
def test_semg_sign_of_ai_does_not_matter(a: list[float]) -> None:
    assert semg_symmetry({"m": a}) == semg_symmetry({"m": [-x for x in a]})


def test_clinician_grade() -> None:
    assert clinician_grade(4, 3, None, None) is True          # IV -> III
    assert clinician_grade(4, 4, 40, 49) is False             # same grade, +9 Sunnybrook
    assert clinician_grade(4, 4, 40, 50) is True              # +10 Sunnybrook
    assert clinician_grade(3, 4, 40, 50) is True              # either scale suffices
    assert clinician_grade(None, 2, None, 60) is None         # no baseline on either scale
    assert clinician_grade(None, None, 30, 35) is False


def test_patient_reported() -> None:
    assert patient_reported(50, 60, None) is True             # FaCE +10
    assert patient_reported(50, 59, 3) is False               # +9 and "somewhat better"
    assert patient_reported(None, None, 4) is True            # "moderately better"
    assert patient_reported(50, None, None) is None


@given(st.integers(1, 6), st.integers(1, 6), st.integers(0, 100), st.integers(0, 100))
def test_grade_responder_is_monotone(hb0: int, hb1: int, sb0: int, sb1: int) -> None:
    # a better latest grade or score never turns a responder into a non-responder
    r = clinician_grade(hb0, hb1, sb0, sb1)
    assert clinician_grade(hb0, max(1, hb1 - 1), sb0, min(100, sb1 + 5)) >= r

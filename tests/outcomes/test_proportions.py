"""Wilson and Newcombe intervals: the published tables, statsmodels, and their invariants."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from outcomes.proportions import newcombe_difference, wilson_interval

REFERENCE = json.loads((Path(__file__).with_name("data") / "statsmodels_reference.json").read_text())


@st.composite
def counts(draw, max_n: int = 500) -> tuple[int, int]:
    n = draw(st.integers(min_value=1, max_value=max_n))
    return draw(st.integers(min_value=0, max_value=n)), n


# Newcombe 1998, Stat Med 17:857-872, Table I, method 3 (score, no continuity correction)
@pytest.mark.parametrize("x, n, low, high", [
    (81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)])
def test_wilson_matches_newcombe_table(x: int, n: int, low: float, high: float) -> None:
    r = wilson_interval(x, n)
    assert (round(r.low, 4), round(r.high, 4)) == (low, high)


# Newcombe 1998, Stat Med 17:873-890, Table II, method 10 (hybrid score, no continuity correction)
@pytest.mark.parametrize("x1, n1, x2, n2, low, high", [
    (56, 70, 48, 80, 0.0524, 0.3339), (9, 10, 3, 10, 0.1705, 0.8090), (5, 56, 0, 29, -0.0381, 0.1926),
    (0, 10, 0, 20, -0.1611, 0.2775), (0, 10, 0, 10, -0.2775, 0.2775), (10, 10, 0, 20, 0.6791, 1.0),
    (10, 10, 0, 10, 0.6075, 1.0)])
def test_newcombe_matches_newcombe_table(x1: int, n1: int, x2: int, n2: int, low: float, high: float) -> None:
    d = newcombe_difference(x1, n1, x2, n2)
    assert (round(d.low, 4), round(d.high, 4)) == (low, high)


def test_against_statsmodels() -> None:
    """150 + 150 random cases computed by statsmodels (make_statsmodels_reference.py)."""
    assert REFERENCE["confidence"] == 0.95
    for c in REFERENCE["wilson"]:
        r = wilson_interval(c["x"], c["n"])
        assert r.low == pytest.approx(c["low"], abs=1e-12) and r.high == pytest.approx(c["high"], abs=1e-12), c
    for c in REFERENCE["newcombe"]:
        d = newcombe_difference(c["x1"], c["n1"], c["x2"], c["n2"])
        assert d.low == pytest.approx(c["low"], abs=1e-12) and d.high == pytest.approx(c["high"], abs=1e-12), c


@given(counts())
def test_wilson_contains_estimate_and_stays_in_unit_interval(c: tuple[int, int]) -> None:
    x, n = c
    r = wilson_interval(x, n)
    assert 0.0 <= r.low <= r.estimate <= r.high <= 1.0
    assert r.high - r.low > 0  # never a zero-width interval, even at 0/n or n/n


@given(counts())
def test_wilson_is_symmetric_in_success_and_failure(c: tuple[int, int]) -> None:
    x, n = c
    a, b = wilson_interval(x, n), wilson_interval(n - x, n)
    assert a.low == pytest.approx(1 - b.high, abs=1e-12) and a.high == pytest.approx(1 - b.low, abs=1e-12)


@given(counts(), st.floats(min_value=0.5, max_value=0.98))
def test_wilson_widens_with_confidence(c: tuple[int, int], level: float) -> None:
    x, n = c
    narrow, wide = wilson_interval(x, n, level), wilson_interval(x, n, min(0.999, level + 0.01))
    assert wide.low <= narrow.low + 1e-12 and wide.high >= narrow.high - 1e-12


@given(st.integers(min_value=1, max_value=200), st.floats(min_value=0.0, max_value=1.0))
def test_wilson_narrows_with_more_patients(n: int, p: float) -> None:
    # the same observed rate on 4x the patients gives a narrower interval
    x = round(p * n)
    a, b = wilson_interval(x, n), wilson_interval(4 * x, 4 * n)
    assert b.high - b.low < a.high - a.low


@given(counts(200), counts(200))
def test_newcombe_contains_difference_and_is_antisymmetric(a: tuple[int, int], b: tuple[int, int]) -> None:
    d = newcombe_difference(a[0], a[1], b[0], b[1])
    r = newcombe_difference(b[0], b[1], a[0], a[1])
    assert -1.0 <= d.low <= d.estimate <= d.high <= 1.0
    assert d.estimate == pytest.approx(-r.estimate, abs=1e-12)
    assert d.low == pytest.approx(-r.high, abs=1e-12) and d.high == pytest.approx(-r.low, abs=1e-12)


def test_empty_groups_and_bad_counts() -> None:
    assert wilson_interval(0, 0).estimate is None and (wilson_interval(0, 0).low, wilson_interval(0, 0).high) == (0, 1)
    assert newcombe_difference(3, 5, 0, 0).estimate is None
    for x, n in [(-1, 5), (6, 5), (0, -1)]:
        with pytest.raises(ValueError):
            wilson_interval(x, n)
    with pytest.raises(ValueError):
        wilson_interval(1, 2, confidence=1.0)

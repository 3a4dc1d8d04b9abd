"""Confidence intervals for responder rates and their differences (pure).

wilson_interval      Wilson score interval of one proportion, no continuity correction
                     (Wilson 1927; Newcombe 1998, Stat Med 17:857-872, method 3).
newcombe_difference  Newcombe's hybrid score interval of p1 - p2 for two independent
                     proportions (Newcombe 1998, Stat Med 17:873-890, method 10), built
                     from the two Wilson intervals.

Both keep their nominal coverage far better than the Wald interval at the small n
and extreme rates a clinic cohort has (0/12 responders is a real result); neither
ever leaves [0, 1] (resp. [-1, 1]). They agree with statsmodels'
``proportion_confint(method="wilson")`` and
``confint_proportions_2indep(method="newcomb")`` (tests/outcomes/test_proportions.py
checks the published tables of Newcombe 1998).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.stats import norm

#: the confidence level every outcome is reported at
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Rate:
    """``successes`` of ``n`` with its estimate and interval; estimate None when n is 0."""

    successes: int
    n: int
    estimate: float | None
    low: float
    high: float


@dataclass(frozen=True)
class Difference:
    """p1 - p2 with its interval; every field None when either group is empty."""

    estimate: float | None
    low: float | None
    high: float | None


def z_value(confidence: float = CONFIDENCE) -> float:
    """Two-sided standard normal quantile, 1.959964 for 0.95."""
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must be in (0, 1)")
    return float(norm.ppf(0.5 + confidence / 2.0))


def _check(successes: int, n: int) -> None:
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")


def wilson_interval(successes: int, n: int, confidence: float = CONFIDENCE) -> Rate:
    """Wilson score interval for successes/n.

    centre = (x + z²/2) / (n + z²),  half-width = z·sqrt(x(n-x)/n + z²/4) / (n + z²).
    With n = 0 nothing is known: the interval is [0, 1] and the estimate None.
    """
    _check(successes, n)
    if n == 0:
        return Rate(0, 0, None, 0.0, 1.0)
    z = z_value(confidence)
    z2 = z * z
    centre = (successes + z2 / 2.0) / (n + z2)
    half = z * math.sqrt(successes * (n - successes) / n + z2 / 4.0) / (n + z2)
    # exact at the edges (0 successes: low 0; n successes: high 1), not 1e-17 off
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return Rate(successes, n, successes / n, low, high)


def newcombe_difference(x1: int, n1: int, x2: int, n2: int, confidence: float = CONFIDENCE) -> Difference:
    """Newcombe's hybrid score interval for p1 - p2 (independent groups).

    With (l_i, u_i) the Wilson interval of p_i:
    low  = d - sqrt((p1 - l1)² + (u2 - p2)²),  high = d + sqrt((u1 - p1)² + (p2 - l2)²).
    """
    a, b = wilson_interval(x1, n1, confidence), wilson_interval(x2, n2, confidence)
    if a.estimate is None or b.estimate is None:
        return Difference(None, None, None)
    d = a.estimate - b.estimate
    low = d - math.sqrt((a.estimate - a.low) ** 2 + (b.high - b.estimate) ** 2)
    high = d + math.sqrt((a.high - a.estimate) ** 2 + (b.estimate - b.low) ** 2)
    return Difference(d, max(-1.0, low), min(1.0, high))

"""Left/right balance of a muscle pair: activity level, asymmetry index, ratio.

The one definition used by the worker's live balance, the offline tools, the
simulator's ground truth and (re-stated in SQL, checked by a test) the
database's session analysis (`app.refresh_session`, migration 0013).

Activity level of one channel over a window (µV)::

    A = sqrt(max(mean(e_k^2) - r^2, 0))

e_k the RMS envelope samples inside the window, r the channel's rest level (the
RMS amplitude at rest, i.e. sqrt(mean(e^2)) over a rest reference). A is the RMS
amplitude of the muscle's own activity with the rest level removed.

Choice: rest removed, in the power domain. Rest activity (amplifier and
electrode noise, 2-5 µV on the face) is independent of the muscle's activity, so
the powers add: mean(e^2) = A^2 + r^2. Raw amplitude would pull every AI towards
0 by an amount set by each electrode's noise, largest exactly where it matters
(a weak affected side, windows that include the reaction time before the
movement), and would give a meaningless AI for a silent pair instead of none.
Subtracting amplitudes (e - r) instead of powers over-corrects weak activity.
References: Merletti & Parker (eds.), "Electromyography: physiology,
engineering and non-invasive applications" (2004) on amplitude estimation in
additive noise; the symmetry index of Robinson, Herzog & Nigg (1987), here
scaled to [-1, 1].

Asymmetry index (dimensionless, in [-1, 1], 0 = symmetric, > 0 = left stronger)::

    AI = (L - R) / (L + R)

undefined (NaN / None) when neither side is active: a silent pair has no
asymmetry, it is not symmetric. A side is active in a window when its activity
level exceeds its rest level (A > r: the activity's power is above the rest
power, the envelope RMS above sqrt(2) r); with no rest reference (r = 0), when
A > 0. `pair_active` is that rule; `asymmetry_index` takes levels and applies
only L + R > 0 and an optional floor, so callers gate with `pair_active`.

Ratio affected / healthy (dimensionless, [0, inf), 1 = symmetric): A_aff / A_healthy,
undefined when the healthy side's level is 0. With AI oriented left-minus-right::

    ratio = (1 + AI) / (1 - AI)   affected = L
    ratio = (1 - AI) / (1 + AI)   affected = R
"""

from __future__ import annotations

import math

import numpy as np

from mimetic.domain import Side

ArrayOrFloat = np.ndarray | float
REL_TOL = 1e-9  # powers closer than this (relative) are equal: the level is 0


def rest_level_uv(rest_envelope_uv: np.ndarray) -> float:
    """Rest level r (µV): the RMS of the envelope over a rest reference, sqrt(mean(e^2)); NaN if empty."""
    e = np.asarray(rest_envelope_uv, dtype=np.float64)
    e = e[np.isfinite(e)]
    return float(np.sqrt(np.mean(e * e))) if e.size else float("nan")


def activity_level_uv(mean_square_uv2: ArrayOrFloat, rest_uv: ArrayOrFloat = 0.0) -> np.ndarray:
    """A = sqrt(max(P - r^2, 0)) from the window's mean squared envelope P (µV^2) and rest level r (µV)."""
    p = np.asarray(mean_square_uv2, dtype=np.float64)
    r2 = np.asarray(rest_uv, dtype=np.float64) ** 2
    excess = p - r2
    # below float rounding of the two powers: exactly at rest (no 1e-8 µV "activity" with an AI of +-1)
    return np.sqrt(np.where(excess > REL_TOL * np.maximum(p, r2), excess, 0.0))


def window_level_uv(envelope_uv: np.ndarray, rest_uv: float = 0.0) -> float:
    """Activity level A (µV) of one channel from its envelope samples in a window; NaN if none."""
    e = np.asarray(envelope_uv, dtype=np.float64).reshape(-1)
    e = e[np.isfinite(e)]
    if e.size == 0:
        return float("nan")
    return float(activity_level_uv(np.mean(e * e), rest_uv))


def pair_active(left: ArrayOrFloat, right: ArrayOrFloat, rest_left_uv: ArrayOrFloat = 0.0,
                rest_right_uv: ArrayOrFloat = 0.0) -> np.ndarray:
    """True where at least one side's activity level exceeds its rest level (A > r)."""
    return (np.asarray(left, dtype=np.float64) > np.asarray(rest_left_uv, dtype=np.float64)) | \
        (np.asarray(right, dtype=np.float64) > np.asarray(rest_right_uv, dtype=np.float64))


def asymmetry_index(left: ArrayOrFloat, right: ArrayOrFloat, min_level_uv: float = 0.0) -> np.ndarray:
    """AI = (L - R) / (L + R) of activity levels; NaN where max(L, R) <= min_level_uv or L + R <= 0."""
    lv = np.asarray(left, dtype=np.float64)
    rv = np.asarray(right, dtype=np.float64)
    total = lv + rv
    ok = (total > 0) & (np.maximum(lv, rv) > min_level_uv)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok, (lv - rv) / np.where(ok, total, 1.0), np.nan)


def affected_ratio(left: ArrayOrFloat, right: ArrayOrFloat, affected: Side | str,
                   min_level_uv: float = 0.0) -> np.ndarray:
    """Ratio affected / healthy of activity levels; NaN where the healthy side is <= 0 or the pair
    is inactive (as for `asymmetry_index`)."""
    lv = np.asarray(left, dtype=np.float64)
    rv = np.asarray(right, dtype=np.float64)
    aff, hea = (lv, rv) if Side(affected) is Side.LEFT else (rv, lv)
    ok = (hea > 0) & (np.maximum(lv, rv) > min_level_uv)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok, aff / np.where(ok, hea, 1.0), np.nan)


def ratio_from_ai(ai: ArrayOrFloat, affected: Side | str) -> np.ndarray:
    """The affected/healthy ratio implied by an AI (NaN where AI is NaN or the healthy side is 0)."""
    a = np.asarray(ai, dtype=np.float64)
    sign = 1.0 if Side(affected) is Side.LEFT else -1.0
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sign * a < 1.0, (1 + sign * a) / (1 - sign * a), np.nan)


def optional(v: float | np.floating | np.ndarray) -> float | None:
    """A float for JSON / records: None where undefined (NaN or infinite)."""
    f = float(v)
    return f if math.isfinite(f) else None

"""Synkinesis index: involuntary co-activation of a non-target muscle N during a
target movement T (e.g. orbicularis oculi firing while smiling), affected side
against healthy side.

    S(T, N) = (A_aff - A_healthy) / (A_aff + A_healthy)   in [-1, 1]

A_side = activity level of N on that side (`balance.activity_level_uv`, rest
removed in the power domain) over all of T's task windows pooled. 0 = the same
co-activation on both sides; > 0 = more on the affected side, the synkinesis
signature; flagged above a threshold (default 0.25, `DEFAULT_FLAG_THRESHOLD`).
Undefined when neither side of N is active (`balance.pair_active`: no
co-activation at all is no synkinesis, not an index of +-1 from noise).

Choice: the comparison is against the patient's own healthy side rather than
a population norm (no normative co-activation data exist for every montage),
and over the target task's windows rather than over detected activations, so
a weak target muscle on the affected side cannot hide the windows. It is the
clinical notion of synkinesis (involuntary movement of one region during a
voluntary movement of another, as graded by the Sunnybrook scale's synkinesis
items) made quantitative with the same orientation as the asymmetry index.
"""

from __future__ import annotations

import numpy as np

from processors.measures.balance import ArrayOrFloat, pair_active

DEFAULT_FLAG_THRESHOLD = 0.25


def synkinesis_index(affected_uv: ArrayOrFloat, healthy_uv: ArrayOrFloat, rest_affected_uv: ArrayOrFloat = 0.0,
                     rest_healthy_uv: ArrayOrFloat = 0.0) -> np.ndarray:
    """(A_aff - A_healthy) / (A_aff + A_healthy); NaN where neither side is active (A > its rest level)."""
    a = np.asarray(affected_uv, dtype=np.float64)
    h = np.asarray(healthy_uv, dtype=np.float64)
    total = a + h
    ok = pair_active(a, h, rest_affected_uv, rest_healthy_uv) & (total > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok, (a - h) / np.where(ok, total, 1.0), np.nan)


def synkinesis_flag(index: float, threshold: float = DEFAULT_FLAG_THRESHOLD) -> bool:
    """True where the index exceeds the threshold (False where undefined)."""
    return bool(np.isfinite(index) and index > threshold)

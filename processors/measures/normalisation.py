"""%MVC: activity as a percentage of a maximal voluntary contraction (MVC).

    %MVC = 100 * A / A_ref

A is the activity level (`balance.activity_level_uv`: rest removed in the power
domain) in the window of interest; A_ref the activity level of the same muscle
over the session's `mvc_calibration` task window (the whole window, all its
repetitions pooled: the mean over the calibration is stable where a maximum of
a noisy envelope is not).

Choice of reference: ONE reference per muscle pair, the HEALTHY side's MVC,
for both sides. Normalising each side by its own MVC removes exactly what the
clinic measures: the affected side's maximal contraction is weak too, so
own-side %MVC would read ~symmetric for a paralysed face. With one reference
per pair, AI and the affected/healthy ratio are unchanged by normalisation (AI
is scale invariant) and %MVC reads as "percent of what the healthy side can
do". Where the affected side is unknown, the stronger side's MVC is the
reference.

Session without a calibration: the session analysis borrows the reference of
the patient's latest earlier session that had its own (`mvc_ref_session` in
the session summary says which; migration 0019). Electrodes are placed anew
each session, so a borrowed reference is the less exact one and is used only
when the session has none; the live worker (no patient history) gives no %MVC
then. References: Burden 2010, J Electromyogr Kinesiol 20:1023
(normalisation methods); Halaki & Ginn 2012 (normalisation to MVC).
"""

from __future__ import annotations

import numpy as np

from mimetic.domain import Side
from processors.measures.balance import ArrayOrFloat


def mvc_reference_uv(mvc_left_uv: float, mvc_right_uv: float, affected: Side | str | None) -> float:
    """The pair's reference A_ref (µV): the healthy side's MVC level, or the larger one if unknown."""
    if affected is None:
        return float(max(mvc_left_uv, mvc_right_uv))
    return float(mvc_right_uv if Side(affected) is Side.LEFT else mvc_left_uv)


def pct_mvc(level_uv: ArrayOrFloat, reference_uv: float) -> np.ndarray:
    """100 * A / A_ref; NaN where the reference is not positive (no calibration, silent calibration)."""
    a = np.asarray(level_uv, dtype=np.float64)
    if not (reference_uv > 0):
        return np.full(a.shape, np.nan)
    return 100.0 * a / reference_uv

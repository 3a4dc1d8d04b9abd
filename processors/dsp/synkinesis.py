"""Synkinesis: involuntary co-activation of a non-target muscle during a target
movement (e.g. orbicularis oculi firing while smiling with zygomaticus).

Measured per side as the non-target muscle's activity level (envelope with its
rest level removed in the power domain, `processors.measures.balance`) inside the
given windows (task windows or the target muscle's activations) on that side;
then affected against healthy side (`processors.measures.synkinesis`). Larger on
the affected side = synkinesis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from processors.dsp.activation import Activation
from processors.dsp.balance import none_if_nan
from processors.measures.balance import window_level_uv
from processors.measures.synkinesis import synkinesis_index
from mimetic.domain import Side


def coactivation_level(nontarget_env: np.ndarray, times_s: np.ndarray,
                       windows: list[Activation] | list[tuple[float, float]], rest_level: float = 0.0) -> float:
    """Activity level sqrt(max(mean(e^2) - rest^2, 0)) over the union of the windows; NaN if none."""
    t = np.asarray(times_s)
    m = np.zeros(t.shape, dtype=bool)
    for w in windows:
        a, b = (w.onset_s, w.offset_s) if isinstance(w, Activation) else w
        m |= (t >= a) & (t <= b)
    if not m.any():
        return float("nan")
    return window_level_uv(np.asarray(nontarget_env)[m], rest_level)


@dataclass(frozen=True)
class Synkinesis:
    target: str
    nontarget: str
    affected: str
    level_affected: float | None  # normalised units (e.g. %MVC) of the non-target muscle
    level_healthy: float | None
    difference: float | None  # affected - healthy
    ratio: float | None  # affected / healthy; None where healthy is ~0
    index: float | None = None  # (affected - healthy) / (affected + healthy), processors.measures.synkinesis

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def synkinesis(target: str, nontarget: str, affected: Side | str, times_s: np.ndarray,
               nontarget_env: dict[str, np.ndarray], target_windows: dict[str, list],
               rest_level: dict[str, float] | None = None, min_level: float = 1e-9) -> Synkinesis:
    """Compare co-activation of `nontarget` during `target`'s windows, affected vs healthy.

    `nontarget_env` and `target_windows` are keyed by side ("L"/"R"); envelopes sampled at `times_s`.
    """
    aff = Side(affected)
    rest = rest_level or {}
    lv = {s.value: coactivation_level(nontarget_env[s.value], times_s, target_windows.get(s.value, []),
                                      rest.get(s.value, 0.0)) for s in Side}
    a, h = lv[aff.value], lv[aff.other.value]
    ratio = a / h if np.isfinite(a) and np.isfinite(h) and h > min_level else float("nan")
    idx = synkinesis_index(a, h, rest.get(aff.value, 0.0), rest.get(aff.other.value, 0.0))
    return Synkinesis(target, nontarget, aff.value, none_if_nan(a), none_if_nan(h), none_if_nan(a - h),
                      none_if_nan(ratio), none_if_nan(idx))

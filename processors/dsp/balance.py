"""Left/right balance per muscle pair, on envelopes (the streaming and window helpers).

The definitions are `processors.measures.balance`: activity level
A = sqrt(max(mean(e^2) - r^2, 0)) (rest removed in the power domain), AI =
(L - R) / (L + R) in [-1, 1], ratio = affected / healthy. The functions here take
a window's RMS of the envelope, sqrt(mean(e^2)), per side, and each side's rest
level r (the rest RMS of the envelope, sqrt(mean^2 + SD^2) of a rest baseline).
Robust to silence: where the pair is inactive (`measures.balance.pair_active`, or,
with explicit `active_*` thresholds on the envelope RMS, neither side above its
threshold) AI and ratio are NaN (undefined), and the ratio is NaN where the
healthy side's level is 0; no division ever blows up. Use `none_if_nan`
for JSON (null).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from processors.dsp.envelope import MovingSum
from processors.dsp.filters import as_2d
from processors.measures import balance as defs
from mimetic.domain import Side


def _levels(left: np.ndarray, right: np.ndarray, rest_left: float, rest_right: float) -> tuple[np.ndarray, np.ndarray]:
    l_ = np.asarray(left, dtype=np.float64)
    r_ = np.asarray(right, dtype=np.float64)
    return defs.activity_level_uv(l_ * l_, rest_left), defs.activity_level_uv(r_ * r_, rest_right)


def window_rms(envelope: np.ndarray) -> float:
    """sqrt(mean(e^2)) of envelope samples (the input the functions below take); NaN if empty."""
    e = np.asarray(envelope, dtype=np.float64).reshape(-1)
    return float(np.sqrt(np.mean(e * e))) if e.size else float("nan")


def asymmetry_index(left: np.ndarray | float, right: np.ndarray | float, rest_left: float = 0.0,
                    rest_right: float = 0.0, active_left: float | None = None,
                    active_right: float | None = None) -> np.ndarray:
    """AI of the activity levels of window envelope RMS `left`/`right` over rest; NaN where the
    pair is inactive (see the module doc) or L+R is 0."""
    l_raw, r_raw = np.asarray(left, dtype=np.float64), np.asarray(right, dtype=np.float64)
    l_, r_ = _levels(l_raw, r_raw, rest_left, rest_right)
    if active_left is None and active_right is None:
        active = defs.pair_active(l_, r_, rest_left, rest_right)
    else:
        al = rest_left if active_left is None else active_left
        ar = rest_right if active_right is None else active_right
        active = (l_raw > al) | (r_raw > ar)
    return np.where(active, defs.asymmetry_index(l_, r_), np.nan)


def affected_ratio(left: np.ndarray | float, right: np.ndarray | float, affected: Side | str = Side.LEFT,
                   rest_left: float = 0.0, rest_right: float = 0.0,
                   active_left: float | None = None, active_right: float | None = None) -> np.ndarray:
    """affected/healthy of the activity levels; NaN where the pair is inactive (with explicit
    thresholds: where the healthy side is below its own) or the healthy level is 0."""
    l_raw, r_raw = np.asarray(left, dtype=np.float64), np.asarray(right, dtype=np.float64)
    l_, r_ = _levels(l_raw, r_raw, rest_left, rest_right)
    if active_left is None and active_right is None:
        ok = defs.pair_active(l_, r_, rest_left, rest_right)
    else:
        hea_raw = r_raw if Side(affected) is Side.LEFT else l_raw
        ok = hea_raw > ((rest_right if active_right is None else active_right) if Side(affected) is Side.LEFT
                        else (rest_left if active_left is None else active_left))
    return np.where(ok, defs.affected_ratio(l_, r_, affected), np.nan)


@dataclass(frozen=True)
class PairBalance:
    muscle: str
    asymmetry_index: float | None
    ratio: float | None
    left: float
    right: float
    affected: str

    def to_dict(self) -> dict[str, Any]:
        return {"muscle": self.muscle, "asymmetry_index": self.asymmetry_index, "ratio": self.ratio,
                "left": self.left, "right": self.right, "affected_side": self.affected}


def none_if_nan(v: float | np.floating) -> float | None:
    return defs.optional(v)


def pair_balance(muscle: str, left_level: float, right_level: float, affected: Side | str = Side.LEFT,
                 rest_left: float = 0.0, rest_right: float = 0.0,
                 active_left: float | None = None, active_right: float | None = None) -> PairBalance:
    """Balance of one muscle over one window, from each side's envelope RMS in it."""
    ai = asymmetry_index(left_level, right_level, rest_left, rest_right, active_left, active_right)
    ra = affected_ratio(left_level, right_level, affected, rest_left, rest_right, active_left, active_right)
    return PairBalance(muscle, none_if_nan(ai), none_if_nan(ra), float(left_level), float(right_level), Side(affected).value)


def window_balance(env_left: np.ndarray, env_right: np.ndarray, times_s: np.ndarray,
                   windows_s: list[tuple[float, float]], **kw: Any) -> list[tuple[float, float]]:
    """(AI, ratio) per task window / repetition [start, end) from envelopes sampled at `times_s`.

    Keyword arguments as for `asymmetry_index` / `affected_ratio` (affected, rest_*, active_*).
    """
    t = np.asarray(times_s)
    out = []
    aff = kw.pop("affected", Side.LEFT)
    for start, end in windows_s:
        m = (t >= start) & (t < end)
        if not m.any():
            out.append((np.nan, np.nan))
            continue
        lm, rm = window_rms(np.asarray(env_left)[m]), window_rms(np.asarray(env_right)[m])
        out.append((float(asymmetry_index(lm, rm, **kw)), float(affected_ratio(lm, rm, aff, **kw))))
    return out


class SlidingBalance:
    """Streaming AI / ratio over sliding windows of the envelope of one pair.

    Window mean squares are computed with the same aligned block sums as the RMS, so
    the result is framing-independent; `process(left, right)` takes envelope frames.
    """

    def __init__(self, window_n: int, hop_n: int, affected: Side | str = Side.LEFT,
                 rest_left: float = 0.0, rest_right: float = 0.0, acc: MovingSum | None = None):
        if window_n % hop_n:
            raise ValueError("window must be a whole number of hops")
        self.window_n, self.hop_n = int(window_n), int(hop_n)
        self.affected = Side(affected).value
        self.rest_left, self.rest_right = float(rest_left), float(rest_right)
        self.acc = acc or MovingSum(2, hop_n, window_n // hop_n)

    def process(self, env_left: np.ndarray, env_right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        e = np.vstack([as_2d(env_left), as_2d(env_right)])
        rms = np.sqrt(self.acc.process(e * e) / self.window_n)
        ai = asymmetry_index(rms[0], rms[1], self.rest_left, self.rest_right)
        ra = affected_ratio(rms[0], rms[1], self.affected, self.rest_left, self.rest_right)
        return ai, ra

    def to_state(self) -> dict[str, Any]:
        return {"window_n": self.window_n, "hop_n": self.hop_n, "affected": self.affected,
                "rest_left": self.rest_left, "rest_right": self.rest_right, "acc": self.acc.to_state()}

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> "SlidingBalance":
        return cls(s["window_n"], s["hop_n"], s["affected"], s["rest_left"], s["rest_right"],
                   MovingSum.from_state(s["acc"]))


class TaskWindowBalance:
    """Streaming balance of one pair over a task window / repetition (e.g. a 'smile'
    marked by session events): feed envelope frames of both sides while the task runs,
    then `result()` gives AI and ratio of the window's envelope RMS per side. Plain-data
    state (`sums` are sums of squared envelope samples)."""

    def __init__(self, muscle: str, affected: Side | str = Side.LEFT, rest_left: float = 0.0, rest_right: float = 0.0,
                 active_left: float | None = None, active_right: float | None = None,
                 sums: tuple[float, float] = (0.0, 0.0), count: int = 0):
        self.muscle, self.affected = muscle, Side(affected).value
        self.rest_left, self.rest_right = float(rest_left), float(rest_right)
        self.active_left, self.active_right = active_left, active_right
        self.sum_left, self.sum_right = float(sums[0]), float(sums[1])
        self.count = int(count)

    def add(self, env_left: np.ndarray, env_right: np.ndarray) -> None:
        l_, r_ = np.asarray(env_left, dtype=np.float64).reshape(-1), np.asarray(env_right, dtype=np.float64).reshape(-1)
        if l_.shape != r_.shape:
            raise ValueError("left and right envelope frames must have the same length")
        self.sum_left += float(np.dot(l_, l_))
        self.sum_right += float(np.dot(r_, r_))
        self.count += l_.size

    def result(self) -> PairBalance:
        if self.count == 0:
            return PairBalance(self.muscle, None, None, float("nan"), float("nan"), self.affected)
        return pair_balance(self.muscle, float(np.sqrt(self.sum_left / self.count)),
                            float(np.sqrt(self.sum_right / self.count)), self.affected,
                            self.rest_left, self.rest_right, self.active_left, self.active_right)

    def to_state(self) -> dict[str, Any]:
        return {"muscle": self.muscle, "affected": self.affected, "rest_left": self.rest_left,
                "rest_right": self.rest_right, "active_left": self.active_left, "active_right": self.active_right,
                "sums": [self.sum_left, self.sum_right], "count": self.count}

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> "TaskWindowBalance":
        return cls(s["muscle"], s["affected"], s["rest_left"], s["rest_right"], s["active_left"], s["active_right"],
                   tuple(s["sums"]), s["count"])

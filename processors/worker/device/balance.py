"""The live left/right balance: envelope statistics per 1 s window, the rest baseline learned
from the quietest window so far, and the balance records of each closed window.

The window statistics are kept as Python float sums, added envelope sample by
sample (the same rounding however the frames are cut), so a replay after a crash
gives the same records to the bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
import numpy as np

from processors import records as R
from processors.measures.balance import (activity_level_uv, affected_ratio, asymmetry_index, optional,
                                         pair_active)
from processors.worker.device.common import utc
from processors.worker.device.session import ChannelSite

BALANCE_WINDOW_S = 1.0
ACTIVATION_K = 3.0  # threshold = rest mean + k * SD
MIN_REST_WINDOWS = 3  # windows seen before activation detection starts


class RestBaseline(msgspec.Struct):
    """Per channel, the envelope's mean and SD over the quietest full window seen (µV)."""

    mean: list[float] | None = None
    sd: list[float] | None = None
    windows_seen: int = 0

    def update(self, means: list[float], sds: list[float]) -> bool:
        """One more full window; True when the baseline was set or lowered (thresholds to re-arm)."""
        self.windows_seen += 1
        if self.mean is None or self.sd is None or len(self.mean) != len(means):
            self.mean, self.sd = list(means), list(sds)
            return True
        changed = False
        for i, (m, s) in enumerate(zip(means, sds)):
            if m < self.mean[i]:
                self.mean[i], self.sd[i] = m, s
                changed = True
        return changed

    def ready(self, n_channels: int) -> bool:
        """Whether activity can be told from rest on `n_channels` channels."""
        return self.mean is not None and len(self.mean) == n_channels and self.windows_seen >= MIN_REST_WINDOWS

    def threshold(self, ch: int) -> float:
        """Activity threshold of a channel's envelope: rest mean + k * SD (SD at least 5 % of the mean)."""
        assert self.mean is not None and self.sd is not None
        m, s = self.mean[ch], self.sd[ch]
        return m + ACTIVATION_K * max(s, 0.05 * m)

    def level(self, ch: int) -> float:
        """The channel's rest level (µV): the RMS of its quietest window's envelope."""
        assert self.mean is not None and self.sd is not None
        return math.hypot(self.mean[ch], self.sd[ch])

    def base(self, ch: int) -> float | None:
        """The rest mean of a channel (µV), None before any window."""
        return self.mean[ch] if self.mean and ch < len(self.mean) else None


@dataclass(frozen=True, slots=True)
class ClosedWindow:
    """One balance window's envelope sums, per channel, when it closed."""

    index: int  # floor(time since the chain's start / BALANCE_WINDOW_S)
    n: int  # envelope samples in it
    sums: list[float]
    squares: list[float]

    def means(self) -> list[float]:
        return [s / self.n for s in self.sums]

    def sds(self) -> list[float]:
        return [math.sqrt(max(q / self.n - m * m, 0.0)) for q, m in zip(self.squares, self.means())]

    def rms(self) -> list[float]:
        return [math.sqrt(q / self.n) for q in self.squares]


class SlidingBalance(msgspec.Struct):
    """The open balance window's sums per channel."""

    index: int | None = None
    sums: list[float] = []
    squares: list[float] = []
    n: int = 0

    def reset(self) -> None:
        """A new chain: the open window is forgotten (its time base is gone)."""
        self.index = None

    def feed(self, env: np.ndarray, times_s: np.ndarray) -> list[ClosedWindow]:
        """A batch of envelope columns (channels, n) at `times_s` since the chain's start; the
        windows it closed (empty ones left out)."""
        closed: list[ClosedWindow] = []
        idx = np.floor(times_s / BALANCE_WINDOW_S).astype(np.int64).tolist()
        ws = wq = None  # the window's sums as arrays while adding (sample by sample: same rounding as floats)
        for j, w in enumerate(idx):
            if self.index is None or w != self.index:
                if ws is not None:
                    self.sums, self.squares = ws.tolist(), wq.tolist()
                if self.index is not None and self.n:
                    closed.append(ClosedWindow(self.index, self.n, self.sums, self.squares))
                self.index, self.sums, self.squares, self.n = w, [0.0] * env.shape[0], [0.0] * env.shape[0], 0
                ws = wq = None
            if ws is None:
                ws, wq = np.array(self.sums, dtype=np.float64), np.array(self.squares, dtype=np.float64)
            col = env[:, j]
            ws += col
            wq += col * col
            self.n += 1
        if ws is not None:
            self.sums, self.squares = ws.tolist(), wq.tolist()
        return closed


def balance(left_rms_uv: float, right_rms_uv: float, affected_side: str | None, rest_left_uv: float = 0.0,
            rest_right_uv: float = 0.0) -> tuple[float, float, float | None, float | None]:
    """(left level, right level, AI, ratio affected/healthy) of one pair over a window, by the
    definitions of `processors.measures.balance`: each side's envelope RMS with its rest level
    removed in the power domain. AI and ratio are None when neither side is active (level above
    its rest level) or they are undefined; the ratio also when the affected side is unknown."""
    left = float(activity_level_uv(left_rms_uv * left_rms_uv, rest_left_uv))
    right = float(activity_level_uv(right_rms_uv * right_rms_uv, rest_right_uv))
    if not (math.isfinite(left) and math.isfinite(right)) or not pair_active(left, right, rest_left_uv,
                                                                              rest_right_uv):
        return left, right, None, None
    ai = optional(asymmetry_index(left, right))
    ratio = optional(affected_ratio(left, right, affected_side)) if affected_side in ("L", "R") else None
    return left, right, ai, ratio


def pairs(channel_map: list[ChannelSite], n_channels: int) -> list[tuple[str, int, int]]:
    """(muscle, left channel, right channel) of every muscle with both sides mapped, by muscle."""
    by_site = {(c.muscle, c.side): c.channel for c in channel_map if c.channel < n_channels}
    return [(m, by_site[(m, "L")], by_site[(m, "R")]) for m in sorted({m for m, _s in by_site})
            if (m, "L") in by_site and (m, "R") in by_site]


def window_records(win: ClosedWindow, rest: RestBaseline, *, device_id: str, session_id, t0_us: int,
                   hop_s: float, channel_map: list[ChannelSite], affected: str | None,
                   rest_uv: Callable[[int], float | None] = lambda ch: None,
                   reference_uv: Callable[[int, int], float | None] = lambda cl, cr: None) -> list[R.Record]:
    """The sliding balance records of a closed window: one per active muscle pair, none before the
    rest level is known (activity cannot be told from rest). `rest_uv(ch)`: the session's rest
    level where known (else the quietest window's); `reference_uv(left, right)`: the pair's %MVC
    reference where known, and then the levels are %MVC (``normalized``; the AI is unchanged)."""
    if not rest.ready(len(win.sums)):
        return []
    out: list[R.Record] = []
    t0 = t0_us / 1e6 + win.index * BALANCE_WINDOW_S
    rms = win.rms()
    for muscle, cl, cr in pairs(channel_map, len(win.sums)):
        rl, rr = rest_uv(cl), rest_uv(cr)
        left, right, ai, ratio = balance(rms[cl], rms[cr], affected, rest.level(cl) if rl is None else rl,
                                         rest.level(cr) if rr is None else rr)
        if ai is None:
            continue
        ref = reference_uv(cl, cr)
        if ref is not None:
            left, right = 100.0 * left / ref, 100.0 * right / ref
        out.append(R.BalanceRecord(
            device_id=device_id, session_id=session_id, time=utc(t0), time_end=utc(t0 + win.n * hop_s),
            window_kind="sliding", muscle=muscle, left=left, right=right, ai=ai, ratio=ratio,
            affected_side=affected, normalized=ref is not None))
    return out

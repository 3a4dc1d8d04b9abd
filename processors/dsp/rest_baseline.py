"""The causal rest baseline and the activation detection it arms: one implementation for the
live worker and `mimetic dsp` (whose default it is).

A stream has no marked rest, and a live process cannot look ahead, so the baseline is learned
from what has passed:
  * the envelope is cut into `REST_WINDOW_S` (1 s) windows from the chain's start (sample k in
    window floor(centre_s(k) / 1 s));
  * each full window's per-channel mean and SD are candidates; the baseline of a channel is the
    window with the lowest mean so far (`RestBaseline.update`);
  * threshold = mean + k * max(SD, 5 % of the mean) (k = `ACTIVATION_K`, 3);
  * detection starts once `MIN_REST_WINDOWS` (3) windows are seen, and each threshold moves when
    a quieter window closes (an open activation is kept, only its threshold moves).

Framing never changes the result (`detect_causal`): envelope sample k is judged against the
thresholds of the windows that closed before it, because the envelope is cut at window starts
and each piece is detected after the windows it closes are counted. So a whole recording in
one block (`mimetic dsp`) and the same recording in 50 ms frames (the worker) give the same
activations.

The cost is the start: nothing is detected in the first 3 s, and a recording with no quiet
second has a threshold above rest (fewer, shorter activations than a rest task would give).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import msgspec
import numpy as np

from processors.dsp.activation import Activation, Baseline
from processors.dsp.chain import MultiChannelChain

REST_WINDOW_S = 1.0
ACTIVATION_K = 3.0  # threshold = rest mean + k * SD
MIN_REST_WINDOWS = 3  # windows seen before activation detection starts
MIN_SD_FRACTION = 0.05  # SD taken as at least this share of the mean (a flat window's SD is ~0)


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

    def threshold(self, ch: int, k: float = ACTIVATION_K) -> float:
        """Activity threshold of a channel's envelope: rest mean + k * SD (SD at least 5 % of the mean)."""
        assert self.mean is not None and self.sd is not None
        m, s = self.mean[ch], self.sd[ch]
        return m + k * max(s, MIN_SD_FRACTION * m)

    def level(self, ch: int) -> float:
        """The channel's rest level (µV): the RMS of its quietest window's envelope."""
        assert self.mean is not None and self.sd is not None
        return math.hypot(self.mean[ch], self.sd[ch])

    def base(self, ch: int) -> float | None:
        """The rest mean of a channel (µV), None before any window."""
        return self.mean[ch] if self.mean and ch < len(self.mean) else None

    def as_baseline(self, ch: int, k: float = ACTIVATION_K) -> Baseline:
        """The channel's baseline as a `Baseline` (SD floored as in `threshold`, so thresholds agree)."""
        assert self.mean is not None and self.sd is not None
        m = self.mean[ch]
        return Baseline(m, max(self.sd[ch], MIN_SD_FRACTION * m), k)


@dataclass(frozen=True, slots=True)
class ClosedWindow:
    """One rest/balance window's envelope sums, per channel, when it closed."""

    index: int  # floor(time since the chain's start / REST_WINDOW_S)
    n: int  # envelope samples in it
    sums: list[float]
    squares: list[float]

    def means(self) -> list[float]:
        return [s / self.n for s in self.sums]

    def sds(self) -> list[float]:
        return [math.sqrt(max(q / self.n - m * m, 0.0)) for q, m in zip(self.squares, self.means())]

    def rms(self) -> list[float]:
        return [math.sqrt(q / self.n) for q in self.squares]


class WindowSums(msgspec.Struct):
    """The open window's envelope sums per channel (Python float sums added sample by sample:
    the same rounding however the frames are cut, so a replay gives the same values to the bit)."""

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
        idx = np.floor(times_s / REST_WINDOW_S).astype(np.int64).tolist()
        ws = wq = None
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


def arm(chain: MultiChannelChain | None, rest: RestBaseline, k: float = ACTIVATION_K) -> None:
    """Set the chain's detector thresholds from the rest baseline (open activations are kept:
    an armed detector only has its threshold moved)."""
    if chain is None or rest.mean is None:
        return
    thr = [rest.threshold(ch, k) for ch in range(len(rest.mean))]
    if chain.detectors is None:
        chain.set_baselines(thr)
    else:
        for det, t in zip(chain.detectors, thr):
            det.threshold = t


def detect_causal(chain: MultiChannelChain, rest: RestBaseline, window: WindowSums, env: np.ndarray,
                  times_s: np.ndarray, k: float = ACTIVATION_K) -> tuple[list[Activation], list[ClosedWindow]]:
    """Envelope columns (channels, n) just made by `chain` (its `process(..., detect=False)`), at
    `times_s` since its start -> (activations closed, windows closed). The envelope is cut at window
    starts; each piece is detected after the windows it closes updated the baseline (module doc)."""
    acts: list[Activation] = []
    closed: list[ClosedWindow] = []
    if not env.shape[1]:
        return acts, closed
    full_n = int(round(REST_WINDOW_S / chain.timing.hop_s))
    idx = np.floor(times_s / REST_WINDOW_S).astype(np.int64)
    cuts = np.flatnonzero(idx[1:] != idx[:-1]) + 1
    for a, b in zip([0, *cuts.tolist()], [*cuts.tolist(), env.shape[1]]):
        for win in window.feed(env[:, a:b], times_s[a:b]):
            closed.append(win)
            if win.n >= full_n:
                changed = rest.update(win.means(), win.sds())
                if (changed or chain.detectors is None) and rest.windows_seen >= MIN_REST_WINDOWS:
                    arm(chain, rest, k)
        acts += chain.detect(env[:, a:b])
    return acts, closed

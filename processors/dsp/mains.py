"""Mains lines in a live stream: which frequency (50 or 60 Hz), and how strong.

The offline tools buffer a whole recording and call `quality.detect_mains` (median
Welch PSD, line-to-neighbour ratio of the first three harmonics). A live device
cannot keep seconds of raw samples in its changelog state, so `LineMeter` sums the
same spectrum bins as samples come: a Hann-windowed DFT over consecutive windows
of `window_s`, evaluated only at 1 Hz steps within ±6 Hz of the first three
harmonics of each candidate fundamental (13 bins per harmonic and channel). Per
window and channel it gives, for each fundamental,

* ``ratio``: `quality.line_ratio`'s rule on those bins (the line's own bin against the
  median of the 12 beside it), the strongest harmonic: the offline detection rule,
  a line standing `DEFAULT_MIN_RATIO` above its neighbours;
* ``excess_uv``: the RMS amplitude above the floor beside them of the harmonics
  that stand `min_ratio` out (Hann coherent gain 1/2: a sine of amplitude A gives
  |X| = A·N/4). A bin of EMG is exponentially distributed, so during a strong
  contraction a lone bin can stand out by chance (~2 % per harmonic and window);
  the alert's 5 s persistence makes that a non-event.

Which mains to notch (`decide`) asks for more: a real line peak. ``line_score`` is
the line bin's power over the mean of the 10 bins 2-6 Hz away, and 0 unless the
line bin also stands above both bins 1 Hz away (a line sits in its own bin; in a
2 s Hann window the bins 1 Hz away are at the window's spectral zeros). A noise
bin is exponentially distributed, so the ratio of one bin to a mean of ten has a
light tail, (1 + T/10)^-10; over the few tests of a decision (channels x 2
fundamentals x 3 harmonics) `DETECT_MIN_SCORE` 20 makes a noise window pass once
in ~3,000 (measured on 2-channel white noise: 2.5e-5 per line), while hum of 3 µV
amplitude in 3 µV RMS EMG (50-180 Hz) scores 43-186 (`tests/dsp/test_mains.py`);
2 µV scores 17-80, so a faint hum may go unnoticed and the configured mains is
notched then. The median rule above
(threshold 6) fired on 72 of 200 white-noise windows.

`excess_uv` is what `mains_noise` alerts on. The notch-removed power the chain
reports (`QualityWindow.mains_power_ratio`) is no measure of hum: the notches sit
inside the EMG band, so a strong contraction loses ~10-20 % of its power to them
and read as tens of µV of "mains" on fault-free sessions.

Reference: the line-to-local-floor test is the usual spectral check for power line
interference (Mewett, Reynolds & Nazeran, Med Biol Eng Comput 42, 2004,
"Reducing power line interference in digitised electromyogram recordings").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np


CANDIDATES_HZ = (50.0, 60.0)
HARMONICS = 3
OFFSETS_HZ = np.arange(-6.0, 7.0, 1.0)  # bins around each line: the line (±1 Hz) and its neighbours
DETECT_S = 2.0
DEFAULT_MIN_RATIO = 6.0
DETECT_MIN_SCORE = 20.0  # a line to notch: its bin over the mean of the bins 2-6 Hz away (module doc)


@dataclass(frozen=True)
class LineWindow:
    """One finished window: where it ended in the block fed, and per (channel, fundamental) results."""

    end_index: int  # samples of the block fed up to the window's end
    ratio: np.ndarray  # (n_channels, n_fundamentals)
    excess_uv: np.ndarray  # (n_channels, n_fundamentals)
    #: (n_channels, n_fundamentals) the strongest harmonic's line score (module doc); 0 where none peaks
    line_score: np.ndarray | None = None


@dataclass
class LineMeter:
    """Streaming line strength of `fundamentals_hz` (+ 2 harmonics) over windows of `window_s`."""

    fs_hz: float
    n_channels: int
    fundamentals_hz: tuple[float, ...] = CANDIDATES_HZ
    window_s: float = 1.0
    min_ratio: float = DEFAULT_MIN_RATIO
    n_seen: int = 0  # samples of the current window so far
    first: list[float] = field(default_factory=list)  # per channel, the window's first sample (offset)
    re: np.ndarray | list = field(default_factory=list)  # DFT sums (channels, bins)
    im: np.ndarray | list = field(default_factory=list)

    @property
    def n_window(self) -> int:
        return max(16, int(round(self.window_s * self.fs_hz)))

    def bins_hz(self) -> np.ndarray:
        return np.concatenate([h * m + OFFSETS_HZ for m in self.fundamentals_hz for h in range(1, HARMONICS + 1)])

    def feed(self, x_uv: np.ndarray) -> list[LineWindow]:
        """Add a block (n_channels, n) of µV; returns the windows it finished."""
        x = np.asarray(x_uv, dtype=np.float64)
        out: list[LineWindow] = []
        i = 0
        while i < x.shape[1]:
            take = min(x.shape[1] - i, self.n_window - self.n_seen)
            self._add(x[:, i:i + take])
            i += take
            if self.n_seen >= self.n_window:
                out.append(self._finish(i))
        return out

    def _add(self, x: np.ndarray) -> None:
        cos_t, sin_t = _tables(self.fs_hz, self.n_window, self.fundamentals_hz)
        if not self.first:
            self.first = x[:, 0].tolist()
            self.re = np.zeros((self.n_channels, cos_t.shape[1]))
            self.im = np.zeros((self.n_channels, cos_t.shape[1]))
        y = x - np.asarray(self.first)[:, None]
        k = slice(self.n_seen, self.n_seen + x.shape[1])
        self.re = np.asarray(self.re) + y @ cos_t[k]
        self.im = np.asarray(self.im) - y @ sin_t[k]
        self.n_seen += x.shape[1]

    def _finish(self, end_index: int) -> LineWindow:
        nf, per = len(self.fundamentals_hz), len(OFFSETS_HZ)
        power = (np.asarray(self.re) ** 2 + np.asarray(self.im) ** 2).reshape(self.n_channels, nf, HARMONICS, per)
        # `quality.line_ratio(f, psd, f0, half_bw_hz=0.5)` on every (channel, fundamental, harmonic) at once:
        # the line's own bin over the median of the bins beside it (more than 1 Hz away, within 6 Hz)
        peak = power[..., OFFSETS_HZ == 0.0][..., 0]
        floor = np.median(power[..., np.abs(OFFSETS_HZ) > 1.0], axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(floor > 0, peak / np.where(floor > 0, floor, 1.0), 0.0)
        ring = power[..., np.abs(OFFSETS_HZ) > 1.0]
        beside = power[..., np.abs(OFFSETS_HZ) == 1.0].max(axis=-1)
        ring_mean = ring.mean(axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            score = np.where((ring_mean > 0) & (peak > beside), peak / np.where(ring_mean > 0, ring_mean, 1.0), 0.0)
        amp = 4.0 * np.sqrt(np.maximum(peak - floor, 0.0)) / self.n_window  # µV amplitude of each line
        # RMS² adds over the harmonics that stand out; a bin of EMG is no line
        excess = np.sqrt(np.where(r > self.min_ratio, amp * amp / 2.0, 0.0).sum(axis=-1))
        self.n_seen, self.first, self.re, self.im = 0, [], [], []
        return LineWindow(end_index, r.max(axis=-1), excess, score.max(axis=-1))

    def to_state(self) -> dict:
        return {"fs_hz": self.fs_hz, "n_channels": self.n_channels, "fundamentals_hz": list(self.fundamentals_hz),
                "window_s": self.window_s, "min_ratio": self.min_ratio, "n_seen": self.n_seen,
                "first": self.first, "re": np.asarray(self.re).tolist(), "im": np.asarray(self.im).tolist()}

    @classmethod
    def from_state(cls, d: dict) -> "LineMeter":
        return cls(**{**d, "fundamentals_hz": tuple(d["fundamentals_hz"])})


@lru_cache(maxsize=16)
def _tables(fs_hz: float, n_window: int, fundamentals_hz: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Hann window times cos/sin of every bin's phase, (n_window, bins): a block's DFT sums are one
    matrix product (about 0.3 MB per table at 2 kHz, 1 s, one fundamental)."""
    bins = np.concatenate([h * m + OFFSETS_HZ for m in fundamentals_hz for h in range(1, HARMONICS + 1)])
    n = np.arange(n_window, dtype=np.float64)
    w = 0.5 - 0.5 * np.cos(2 * np.pi * n / n_window)  # Hann: offset and motion do not leak
    ph = 2 * np.pi * np.outer(n, bins) / fs_hz
    return w[:, None] * np.cos(ph), w[:, None] * np.sin(ph)


def detector(fs_hz: float, n_channels: int) -> LineMeter:
    """A meter for mains detection: both candidates, one window of `DETECT_S`."""
    return LineMeter(fs_hz, n_channels, CANDIDATES_HZ, DETECT_S)


def decide(w: LineWindow, min_score: float = DETECT_MIN_SCORE) -> float | None:
    """50.0 or 60.0, whose lines stand out most in any channel; None when no line peaks
    `min_score` above the bins beside it (`line_score`, module doc: no real hum)."""
    assert w.line_score is not None
    best = w.line_score.max(axis=0)  # per fundamental, over channels
    k = int(np.argmax(best))
    return CANDIDATES_HZ[k] if best[k] > min_score else None

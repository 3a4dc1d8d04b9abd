"""Streaming median / mean frequency per window: `frequency_track` fed frame by frame.

A window's Welch PSD is the mean of the periodograms of its segments (Hann,
`segment_s` long, 50 % overlap, each detrended by its own mean), so the
tracker computes each segment's in-band periodogram once, as soon as its
samples are in, and adds it to the (at most two) open windows holding it.
Between calls it keeps only the samples of segments not yet complete (under
one segment per channel, stored as float32: the tracker quantises its input to
float32 on entry, so a state restored mid-stream continues exactly) and one
in-band power sum per open window and channel: bounded, whatever the stream
length. Windows, hops and segments are whole numbers of segment steps (half a
segment, rounded to a sample): where `segment_s * fs_hz / 2` is a whole number
(any rate divisible by 8 for the default 0.25 s) its windows equal
`processors.dsp.fatigue.frequency_track` over the whole signal (same start,
window, hop, segment, band), to float32 rounding of the input; elsewhere they
are within a sample of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.signal as ss

from processors.dsp.spectrum import median_mean_frequency

STATE_VERSION = 1


@dataclass(frozen=True)
class SpectralWindow:
    """Median and mean frequency (Hz, per channel) of one window, times in seconds from the stream start."""

    index: int
    start_s: float
    end_s: float
    median_hz: np.ndarray
    mean_hz: np.ndarray

    @property
    def centre_s(self) -> float:
        return 0.5 * (self.start_s + self.end_s)


class SpectralTracker:
    """`feed((n_channels, n))` -> the windows completed by these samples (MDF/MNF per channel)."""

    def __init__(self, fs_hz: float, n_channels: int, window_s: float = 1.0, hop_s: float = 0.5,
                 segment_s: float = 0.25, band_hz: tuple[float, float] = (20.0, 450.0)):
        self.fs_hz, self.n_channels = float(fs_hz), int(n_channels)
        self.window_s, self.hop_s, self.segment_s = float(window_s), float(hop_s), float(segment_s)
        self.band_hz = (float(band_hz[0]), min(float(band_hz[1]), self.fs_hz / 2))
        # in whole segment steps (half a segment: scipy's default overlap), so every rate works
        self.step_n = max(4, int(round(segment_s * fs_hz / 2)))
        self.seg_n = 2 * self.step_n
        self.segs_per_win = max(1, int(round((window_s - segment_s) / (segment_s / 2)))) + 1
        self.steps_per_hop = max(1, int(round(hop_s / (segment_s / 2))))
        self.win_n = self.seg_n + (self.segs_per_win - 1) * self.step_n
        self.hop_n = self.steps_per_hop * self.step_n
        self._taper = ss.get_window("hann", self.seg_n)
        freqs = np.fft.rfftfreq(self.seg_n, 1.0 / self.fs_hz)
        self._band = (freqs >= self.band_hz[0]) & (freqs <= self.band_hz[1])
        self._freqs = freqs[self._band]
        self.pending = np.zeros((self.n_channels, 0), dtype=np.float32)  # samples from segment `next_seg` on
        self.next_seg = 0  # index of the first segment not yet computed
        #: window index -> (segments added, in-band power sums (n_channels, n_bins))
        self.open: dict[int, tuple[int, np.ndarray]] = {}

    def feed(self, x: np.ndarray) -> list[SpectralWindow]:
        """Add samples (n_channels, n); return the windows they complete, in order."""
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[0] != self.n_channels:
            raise ValueError(f"expected ({self.n_channels}, n) samples")
        buf = np.concatenate([self.pending, x.astype(np.float32)], axis=1)
        out: list[SpectralWindow] = []
        start = 0
        while buf.shape[1] - start >= self.seg_n:
            out += self._segment(buf[:, start:start + self.seg_n])
            start += self.step_n
        self.pending = buf[:, start:].copy()
        return out

    def _segment(self, seg: np.ndarray) -> list[SpectralWindow]:
        k = self.next_seg
        self.next_seg += 1
        s = seg.astype(np.float64)
        s -= s.sum(axis=1, keepdims=True) * (1.0 / self.seg_n)
        s *= self._taper
        p = np.abs(np.fft.rfft(s, axis=1)[:, self._band]) ** 2
        out: list[SpectralWindow] = []
        # windows j holding segment k: steps_per_hop * j <= k <= steps_per_hop * j + segs_per_win - 1
        j_lo = max(0, -(-(k - self.segs_per_win + 1) // self.steps_per_hop))
        for j in range(j_lo, k // self.steps_per_hop + 1):
            n, acc = self.open.get(j, (0, np.zeros_like(p)))
            n, acc = n + 1, acc + p
            if n == self.segs_per_win:
                self.open.pop(j, None)
                med, mean = median_mean_frequency(self._freqs, acc, self.band_hz)
                t0 = j * self.hop_n / self.fs_hz
                out.append(SpectralWindow(j, t0, t0 + self.win_n / self.fs_hz, med, mean))
            else:
                self.open[j] = (n, acc)
        return out

    # --- state ---
    def to_state(self) -> dict[str, Any]:
        return {"v": STATE_VERSION, "fs_hz": self.fs_hz, "n_channels": self.n_channels,
                "window_s": self.window_s, "hop_s": self.hop_s, "segment_s": self.segment_s,
                "band_hz": list(self.band_hz), "next_seg": self.next_seg,
                "pending": self.pending.astype("<f4").tobytes(), "pending_n": int(self.pending.shape[1]),
                "open": [[j, n, acc.astype("<f8").tobytes()] for j, (n, acc) in self.open.items()]}

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> "SpectralTracker":
        if s.get("v") != STATE_VERSION:
            raise ValueError(f"unsupported spectral tracker state {s.get('v')}")
        t = cls(s["fs_hz"], s["n_channels"], s["window_s"], s["hop_s"], s["segment_s"], tuple(s["band_hz"]))
        t.next_seg = int(s["next_seg"])
        t.pending = np.frombuffer(s["pending"], dtype="<f4").astype(np.float32).reshape(
            t.n_channels, int(s["pending_n"]))
        t.open = {int(j): (int(n), np.frombuffer(acc, dtype="<f8").astype(np.float64).reshape(t.n_channels, -1))
                  for j, n, acc in s["open"]}
        return t

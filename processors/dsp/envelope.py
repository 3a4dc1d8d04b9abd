"""Amplitude envelopes: moving RMS (window and hop in seconds) and low-pass linear
envelope, both streaming-exact.

Moving RMS timing convention (used everywhere in mimetic):
  hop = round(hop_s * fs) samples, window = a whole number of hops (>= 1);
  envelope sample k covers input samples [k*hop, k*hop + window) of the stream
  (the first output appears once a full window is in), so
  envelope_fs_hz = fs / hop and its time stamp (window centre) is
  t_k = (k*hop + window/2) / fs.
Window sums are built from per-hop block sums aligned to absolute sample
indices, so framing never changes which numbers are added in which order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.signal as ss

from processors.dsp.filters import SOSFilter, as_2d

DEFAULT_WINDOW_S = 0.100
DEFAULT_HOP_S = 0.010


@dataclass(frozen=True)
class EnvelopeTiming:
    """Sample geometry of a moving-window envelope."""

    fs_hz: float
    hop_n: int
    window_n: int

    @classmethod
    def from_seconds(cls, fs_hz: float, window_s: float = DEFAULT_WINDOW_S, hop_s: float = DEFAULT_HOP_S) -> "EnvelopeTiming":
        hop_n = max(1, int(round(hop_s * fs_hz)))
        blocks = max(1, int(round(window_s * fs_hz / hop_n)))
        return cls(float(fs_hz), hop_n, blocks * hop_n)

    @property
    def blocks(self) -> int:
        return self.window_n // self.hop_n

    @property
    def envelope_fs_hz(self) -> float:
        return self.fs_hz / self.hop_n

    @property
    def window_s(self) -> float:
        return self.window_n / self.fs_hz

    @property
    def hop_s(self) -> float:
        return self.hop_n / self.fs_hz

    def centre_s(self, k: np.ndarray | int) -> np.ndarray:
        """Time stamp (window centre, seconds from stream start) of envelope sample(s) k."""
        return (np.asarray(k) * self.hop_n + self.window_n / 2.0) / self.fs_hz

    def start_s(self, k: np.ndarray | int) -> np.ndarray:
        return np.asarray(k) * self.hop_n / self.fs_hz

    def end_s(self, k: np.ndarray | int) -> np.ndarray:
        return (np.asarray(k) * self.hop_n + self.window_n) / self.fs_hz

    def count(self, n_samples: int) -> int:
        """Envelope samples produced by n_samples of input."""
        return max(0, (n_samples - self.window_n) // self.hop_n + 1)


def block_sum(a: np.ndarray) -> np.ndarray:
    """Sum over the last axis of (rows, blocks, hop). `einsum` is ~5x faster than
    `.sum(-1)` for short inner axes, and adds each block's values in a fixed order
    whatever the array's alignment (checked by the framing tests)."""
    return np.einsum("ijk->ij", a)


def window_sums(seq: np.ndarray, blocks: int) -> np.ndarray:
    """Sums of `blocks` consecutive columns, always added in the same order (left to
    right), so the result does not depend on how the columns arrived."""
    k = seq.shape[-1] - blocks + 1
    t = np.ascontiguousarray(seq.T)  # time-major: contiguous row slices are cheap
    out = t[0:k].copy()
    for j in range(1, blocks):
        out += t[j:j + k]
    return out.T


class MovingSum:
    """Streaming sum over `blocks` consecutive aligned blocks of `hop_n` samples, emitted every hop.

    The building block of the moving RMS (on squares) and of sliding means of envelopes.
    """

    def __init__(self, n_channels: int, hop_n: int, blocks: int,
                 pending: np.ndarray | None = None, tail: np.ndarray | None = None, n_out: int = 0):
        self.n_channels, self.hop_n, self.blocks = int(n_channels), int(hop_n), int(blocks)
        self.pending = np.zeros((self.n_channels, 0)) if pending is None else np.asarray(pending, dtype=np.float64).reshape(self.n_channels, -1)
        self.tail = np.zeros((self.n_channels, 0)) if tail is None else np.asarray(tail, dtype=np.float64).reshape(self.n_channels, -1)
        self.n_out = int(n_out)  # envelope samples emitted so far

    def process(self, v: np.ndarray) -> np.ndarray:
        """Feed values (n_channels, n); returns the window sums completed by them (n_channels, k)."""
        v = as_2d(v)
        hop, p = self.hop_n, self.pending.shape[1]
        first = None
        if p:  # complete the pending block without copying the whole frame
            if v.shape[1] < hop - p:
                self.pending = np.concatenate([self.pending, v], axis=-1)
                return np.zeros((self.n_channels, 0))
            first = block_sum(np.concatenate([self.pending, v[:, :hop - p]], axis=-1)[:, None, :])
            v = v[:, hop - p:]
        full = (v.shape[1] // hop) * hop
        self.pending = v[:, full:].copy()
        block_sums = block_sum(v[:, :full].reshape(self.n_channels, -1, hop))
        if first is not None:
            block_sums = np.concatenate([first, block_sums], axis=-1)
        if block_sums.shape[1] == 0:
            return block_sums
        if self.blocks == 1:
            out = block_sums
        else:
            seq = np.concatenate([self.tail, block_sums], axis=-1) if self.tail.shape[1] else block_sums
            self.tail = seq[:, -(self.blocks - 1):].copy()
            if seq.shape[1] < self.blocks:
                return np.zeros((self.n_channels, 0))
            out = window_sums(seq, self.blocks)
        self.n_out += out.shape[1]
        return out

    def to_state(self) -> dict[str, Any]:
        return {"n_channels": self.n_channels, "hop_n": self.hop_n, "blocks": self.blocks,
                "pending": self.pending.tolist(), "tail": self.tail.tolist(), "n_out": self.n_out}

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> "MovingSum":
        return cls(s["n_channels"], s["hop_n"], s["blocks"], np.array(s["pending"]), np.array(s["tail"]), s["n_out"])


class MovingRMS:
    """Streaming moving RMS of a (conditioned, zero-mean) signal; see module doc for timing."""

    def __init__(self, timing: EnvelopeTiming, n_channels: int, acc: MovingSum | None = None):
        self.timing = timing
        self.n_channels = int(n_channels)
        self.acc = acc or MovingSum(n_channels, timing.hop_n, timing.blocks)

    @classmethod
    def from_seconds(cls, fs_hz: float, n_channels: int, window_s: float = DEFAULT_WINDOW_S,
                     hop_s: float = DEFAULT_HOP_S) -> "MovingRMS":
        return cls(EnvelopeTiming.from_seconds(fs_hz, window_s, hop_s), n_channels)

    @property
    def n_out(self) -> int:
        return self.acc.n_out

    def process(self, x: np.ndarray) -> np.ndarray:
        x = as_2d(x)
        return np.sqrt(self.acc.process(x * x) / self.timing.window_n)

    def to_state(self) -> dict[str, Any]:
        t = self.timing
        return {"fs_hz": t.fs_hz, "hop_n": t.hop_n, "window_n": t.window_n, "n_channels": self.n_channels,
                "acc": self.acc.to_state()}

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> "MovingRMS":
        return cls(EnvelopeTiming(s["fs_hz"], s["hop_n"], s["window_n"]), s["n_channels"], MovingSum.from_state(s["acc"]))


def moving_rms(x: np.ndarray, fs_hz: float, window_s: float = DEFAULT_WINDOW_S,
               hop_s: float = DEFAULT_HOP_S) -> tuple[np.ndarray, np.ndarray]:
    """Offline moving RMS: returns (envelope (n_channels, k), centre times in s)."""
    x = as_2d(x)
    rms = MovingRMS.from_seconds(fs_hz, x.shape[0], window_s, hop_s)
    env = rms.process(x)
    return env, rms.timing.centre_s(np.arange(env.shape[1]))


class LinearEnvelope:
    """Low-pass linear envelope: full-wave rectification then a Butterworth low-pass
    (default 4th order, 6 Hz), optionally decimated by `decimate` samples aligned to
    absolute sample indices. Streaming-exact."""

    def __init__(self, fs_hz: float, n_channels: int, cutoff_hz: float = 6.0, order: int = 4,
                 decimate: int = 1, lp: SOSFilter | None = None, phase: int = 0):
        self.fs_hz, self.n_channels, self.cutoff_hz, self.order = float(fs_hz), int(n_channels), float(cutoff_hz), int(order)
        self.decimate = int(decimate)
        self.lp = lp or SOSFilter(ss.butter(order, cutoff_hz, btype="lowpass", fs=fs_hz, output="sos"), n_channels)
        self.phase = int(phase)  # samples seen so far, mod decimate

    def process(self, x: np.ndarray) -> np.ndarray:
        y = self.lp.process(np.abs(as_2d(x)))
        if self.decimate > 1:
            first = (-self.phase) % self.decimate
            self.phase = (self.phase + y.shape[1]) % self.decimate
            y = y[:, first::self.decimate]
        return y

    def to_state(self) -> dict[str, Any]:
        return {"fs_hz": self.fs_hz, "n_channels": self.n_channels, "cutoff_hz": self.cutoff_hz, "order": self.order,
                "decimate": self.decimate, "lp": self.lp.to_state(), "phase": self.phase}

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> "LinearEnvelope":
        return cls(s["fs_hz"], s["n_channels"], s["cutoff_hz"], s["order"], s["decimate"],
                   SOSFilter.from_state(s["lp"]), s["phase"])


def linear_envelope(x: np.ndarray, fs_hz: float, cutoff_hz: float = 6.0, order: int = 4) -> np.ndarray:
    """Offline low-pass linear envelope at the input rate."""
    x = as_2d(x)
    return LinearEnvelope(fs_hz, x.shape[0], cutoff_hz, order).process(x)

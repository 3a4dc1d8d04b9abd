"""Muscle activation (onset/offset) on an amplitude envelope: double threshold.

Rule (identical offline and streaming):
  1. a sample is "on" when envelope > threshold (rest baseline mean + k*SD);
  2. "off" gaps shorter than `min_off_s` inside an activation are bridged;
  3. an activation closes once `min_off_s` of consecutive off samples follow it,
     and is kept only if its duration (offset_s - onset_s, below) is at least
     `min_on_s`.
The streaming detector emits an activation as soon as it closes (at most
`min_off_s` after its offset), so streaming and offline give the same list.

Times (moving-RMS envelope, see envelope.py): envelope sample k covers input
[k*hop, k*hop+window). `onset_s` is the *end* of the first supra-threshold
window (the first moment the evidence was complete) and `offset_s` the *start*
of the last one: with good SNR both lie within about one hop of the true EMG
edges, whereas window centres would shift them by window/2. For bursts shorter
than the window, offset_s is clamped to onset_s.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from processors.dsp.envelope import EnvelopeTiming

DEFAULT_K = 3.0
DEFAULT_MIN_ON_S = 0.050  # estimated burst duration; keeps blinks (~100 ms) and gait bursts
DEFAULT_MIN_OFF_S = 0.100
DEFAULT_SETTLE_S = 0.5


@dataclass(frozen=True)
class Activation:
    """One closed activation of one channel (amplitudes in the envelope's unit: µV or %MVC)."""

    channel: int
    onset_s: float
    offset_s: float
    peak: float
    mean: float
    area: float  # envelope integral over the activation, unit x s
    onset_index: int  # envelope sample indices, end exclusive
    offset_index: int

    @property
    def duration_s(self) -> float:
        return self.offset_s - self.onset_s

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["duration_s"] = self.duration_s
        return d


@dataclass(frozen=True)
class Baseline:
    """Rest statistics of an envelope channel; threshold = mean + k*SD."""

    mean: float
    sd: float
    k: float = DEFAULT_K

    @property
    def threshold(self) -> float:
        return self.mean + self.k * self.sd


def baseline_from_rest(rest_envelope: np.ndarray, k: float = DEFAULT_K) -> Baseline:
    """Baseline from an envelope segment known to be rest (e.g. the session's `rest` task)."""
    r = np.asarray(rest_envelope, dtype=np.float64)
    r = r[np.isfinite(r)]
    if r.size == 0:
        raise ValueError("empty rest segment")
    return Baseline(float(r.mean()), float(r.std()), k)


def estimate_baseline(envelope: np.ndarray, envelope_fs_hz: float, k: float = DEFAULT_K,
                      segment_s: float = 0.5, quantile: float = 0.25) -> Baseline:
    """Rest baseline when no rest task is marked: cut the envelope into `segment_s`
    segments, keep the quietest `quantile` of them (by median), pool their samples
    and take robust location and spread (median, 1.4826 x MAD) as mean and SD.

    Pooling several quiet segments gives a realistic SD (a single quietest segment
    underestimates it); the robust statistics keep a segment that catches the edge
    of a burst from inflating the threshold.
    """
    e = np.asarray(envelope, dtype=np.float64)
    e = e[np.isfinite(e)]
    if e.size == 0:
        return Baseline(0.0, 0.0, k)
    seg = max(2, int(round(segment_s * envelope_fs_hz)))
    n_seg = e.size // seg
    if n_seg < 2:
        pool = e[e <= np.quantile(e, 0.5)]
    else:
        segs = e[: n_seg * seg].reshape(n_seg, seg)
        med = np.median(segs, axis=1)
        pool = segs[med <= np.quantile(med, quantile)].reshape(-1)
    centre = float(np.median(pool))
    return Baseline(centre, float(1.4826 * np.median(np.abs(pool - centre))), k)


class ActivationDetector:
    """Streaming double-threshold detector for one channel of an envelope stream.

    `process(envelope_frame)` returns the activations closed by this frame;
    `flush()` closes the one still open at end of stream. Indices are absolute
    envelope sample numbers since the stream start.
    """

    def __init__(self, threshold: float, timing: EnvelopeTiming, channel: int = 0,
                 min_on_s: float = DEFAULT_MIN_ON_S, min_off_s: float = DEFAULT_MIN_OFF_S,
                 settle_s: float = DEFAULT_SETTLE_S):
        self.threshold = float(threshold)
        self.settle_s = float(settle_s)
        #: envelope samples whose window starts before settle_s count as "off": the
        #: filters' start-up transient (notch ring-up, offset step) is not an activation
        self.ignore_before = int(np.ceil(settle_s * timing.fs_hz / timing.hop_n)) if settle_s > 0 else 0
        self.timing = timing
        self.channel = int(channel)
        self.min_on_s, self.min_off_s = float(min_on_s), float(min_off_s)
        efs = timing.envelope_fs_hz
        self.min_on_n = max(0, int(round(min_on_s * efs)))  # hops of estimated duration
        self.min_off_n = max(1, int(round(min_off_s * efs)))
        self.n_seen = 0
        self.open_onset: int | None = None  # absolute index of first on sample
        self.open_end = 0  # absolute index one past the last on sample
        self.below_run = 0
        self.buffer: list[float] = []  # envelope values from open_onset on

    def _close(self) -> Activation | None:
        onset, end = self.open_onset, self.open_end
        vals = np.asarray(self.buffer[: end - onset])
        self.open_onset, self.buffer, self.below_run = None, [], 0
        t = self.timing
        onset_s = float(t.end_s(onset))
        offset_s = max(onset_s, float(t.start_s(end - 1)))
        # duration in whole hops (exact integer test, no float rounding at the limit)
        if (end - 1 - onset) * t.hop_n - t.window_n < self.min_on_n * t.hop_n:
            return None
        return Activation(self.channel, onset_s, offset_s, float(vals.max()), float(vals.mean()),
                          float(vals.sum() / t.envelope_fs_hz), int(onset), int(end))

    def process(self, envelope: np.ndarray) -> list[Activation]:
        e = np.asarray(envelope, dtype=np.float64).reshape(-1)
        out: list[Activation] = []
        if e.size == 0:
            return out
        above = e > self.threshold
        if self.open_onset is None and not above.any():  # at rest: nothing opens, nothing to close
            self.n_seen += e.size
            return out
        if self.n_seen < self.ignore_before:
            above[: self.ignore_before - self.n_seen] = False
        change = np.flatnonzero(above[1:] != above[:-1]) + 1
        bounds = np.concatenate([[0], change, [e.size]])
        base = self.n_seen
        for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
            if above[a]:
                if self.open_onset is None:
                    self.open_onset = base + a
                self.buffer.extend(e[a:b].tolist())
                self.open_end = base + b
                self.below_run = 0
            elif self.open_onset is not None:
                need = self.min_off_n - self.below_run
                if b - a >= need:  # the gap is long enough: the activation closes here
                    act = self._close()
                    if act is not None:
                        out.append(act)
                else:
                    self.buffer.extend(e[a:b].tolist())
                    self.below_run += b - a
        self.n_seen += e.size
        return out

    def flush(self) -> list[Activation]:
        """End of stream: close an open activation (offset = last on sample)."""
        if self.open_onset is None:
            return []
        act = self._close()
        return [act] if act is not None else []

    def to_state(self) -> dict[str, Any]:
        t = self.timing
        return {"threshold": self.threshold, "fs_hz": t.fs_hz, "hop_n": t.hop_n, "window_n": t.window_n,
                "channel": self.channel, "min_on_s": self.min_on_s, "min_off_s": self.min_off_s, "settle_s": self.settle_s,
                "n_seen": self.n_seen, "open_onset": self.open_onset, "open_end": self.open_end,
                "below_run": self.below_run, "buffer": list(self.buffer)}

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> "ActivationDetector":
        d = cls(s["threshold"], EnvelopeTiming(s["fs_hz"], s["hop_n"], s["window_n"]), s["channel"],
                s["min_on_s"], s["min_off_s"], s["settle_s"])
        d.n_seen, d.open_onset, d.open_end = s["n_seen"], s["open_onset"], s["open_end"]
        d.below_run, d.buffer = s["below_run"], list(s["buffer"])
        return d


def detect_activations(envelope: np.ndarray, timing: EnvelopeTiming, threshold: float, channel: int = 0,
                       min_on_s: float = DEFAULT_MIN_ON_S, min_off_s: float = DEFAULT_MIN_OFF_S,
                       settle_s: float = DEFAULT_SETTLE_S) -> list[Activation]:
    """Offline detection over a whole envelope (same rule and result as the streaming detector)."""
    det = ActivationDetector(threshold, timing, channel, min_on_s, min_off_s, settle_s)
    return det.process(envelope) + det.flush()

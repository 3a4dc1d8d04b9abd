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
[k*hop, k*hop+window), so the envelope lags and smears the EMG by up to one
window, and a mains notch rings for ~Q/(pi*f0) (64 ms at Q 10, 50 Hz) after a
burst, holding the envelope above a low threshold for 100-250 ms past the true
offset. The reported edges are therefore not the threshold crossings but the
EMG edges they imply, estimated when the activation closes:
  * reference level L = median envelope of the activation's samples within its
    first (for the onset) or last (for the offset) `EDGE_SPAN_S` (0.6 s: long
    enough that a notch's ringing tail cannot be the median, short enough that
    a contraction that weakens later is judged by its own end);
  * edge threshold = max(threshold, f*L), f = `EDGE_FRACTION` (0.5): a window
    holding a share f^2 (1/4) of a burst of level L reaches it;
  * onset = the time the window's end crosses the edge threshold (linear
    interpolation of the envelope's square between hops) minus q*window;
    offset = the time the window's start crosses it going down plus q*window,
    q = (edge threshold / L)^2 the share of a window a burst of level L must
    fill to reach it (f^2 = 1/4 for a burst well above the threshold).
For a burst with sharp edges both are then within a few ms of the true edges,
whatever the window, hop or ringing (measured: `tests/dsp/test_activation_timing.py`).
The double-threshold rule (what counts as one activation; `min_on_s` applies to
the crossings' span less one window, so noise excursions stay out) is unchanged; an activation shorter than the window has
offset_s clamped to onset_s. peak/mean/area are over the envelope samples whose
window centre lies in [onset_s, offset_s) (all of the activation's samples if
none does).
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
EDGE_FRACTION = 0.5  # edges where a window holds EDGE_FRACTION**2 of the burst's power
EDGE_SPAN_S = 0.6  # reference level for each edge: the activation's first / last 0.6 s


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
    peak_s: float | None = None  # the peak's envelope window centre

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
        self.last_value: float | None = None  # the envelope sample before the current frame's first
        self.before_open: float | None = None  # the envelope sample just before open_onset

    def _close(self) -> Activation | None:
        onset, end = self.open_onset, self.open_end
        vals = np.asarray(self.buffer[: end - onset], dtype=np.float64)
        before = self.before_open
        self.open_onset, self.buffer, self.below_run = None, [], 0
        t = self.timing
        # what counts as an activation: the threshold crossings' own span (in whole hops, an exact
        # integer test), which a noise excursion of about one window does not pass
        if (end - 1 - onset) * t.hop_n - t.window_n < self.min_on_n * t.hop_n:
            return None
        onset_s, offset_s = self._edges(vals, before, onset)
        offset_s = max(onset_s, offset_s)
        centres = t.centre_s(np.arange(onset, end))
        mask = (centres >= onset_s) & (centres < offset_s)
        feat, feat_t = (vals[mask], centres[mask]) if mask.any() else (vals, centres)
        k = int(np.argmax(feat))
        return Activation(self.channel, onset_s, offset_s, float(feat[k]), float(feat.mean()),
                          float(feat.sum() / t.envelope_fs_hz), int(onset), int(end), float(feat_t[k]))

    def _edges(self, vals: np.ndarray, before: float | None, onset: int) -> tuple[float, float]:
        """(onset_s, offset_s) of the EMG edges implied by the activation's envelope samples `vals`
        (from absolute index `onset`; `before`: the sample preceding them, if known). Module doc."""
        t = self.timing
        span_n = max(1, int(round(EDGE_SPAN_S * t.envelope_fs_hz)))
        if not (vals > self.threshold).any():
            return float(t.end_s(onset)), float(t.start_s(onset + vals.size - 1))
        head, tail = vals[:span_n], vals[-span_n:]
        level_on = float(np.median(head[head > self.threshold])) if (head > self.threshold).any() else self.threshold
        level_off = float(np.median(tail[tail > self.threshold])) if (tail > self.threshold).any() else self.threshold
        thr_on = max(self.threshold, EDGE_FRACTION * level_on)
        thr_off = max(self.threshold, EDGE_FRACTION * level_off)
        # the share of a window a burst of that level must fill to reach the edge threshold
        share_on_s = min(1.0, (thr_on / level_on) ** 2) * t.window_s if level_on > 0 else 0.0
        share_off_s = min(1.0, (thr_off / level_off) ** 2) * t.window_s if level_off > 0 else 0.0
        # onset: first sample at or above thr_on; interpolate its square against the one before
        i = int(np.argmax(vals >= thr_on))
        prev = vals[i - 1] if i > 0 else before
        frac = _crossing(prev, vals[i], thr_on)
        onset_s = (float(t.end_s(onset + i)) - (1.0 - frac) * t.hop_s) - share_on_s if prev is not None \
            else float(t.end_s(onset + i)) - 0.5 * t.hop_s - share_on_s
        # offset: last sample at or above thr_off; interpolate against the one after (if any)
        j = int(vals.size - 1 - np.argmax(vals[::-1] >= thr_off))
        if j + 1 < vals.size:
            frac = _crossing(vals[j + 1], vals[j], thr_off)
            offset_s = float(t.start_s(onset + j)) + (1.0 - frac) * t.hop_s + share_off_s
        else:
            offset_s = float(t.start_s(onset + j)) + 0.5 * t.hop_s + share_off_s
        return onset_s, offset_s

    def process(self, envelope: np.ndarray) -> list[Activation]:
        e = np.asarray(envelope, dtype=np.float64).reshape(-1)
        out: list[Activation] = []
        if e.size == 0:
            return out
        above = e > self.threshold
        if self.open_onset is None and not above.any():  # at rest: nothing opens, nothing to close
            self.n_seen += e.size
            self.last_value = float(e[-1])
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
                    self.before_open = float(e[a - 1]) if a > 0 else self.last_value
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
        self.last_value = float(e[-1])
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
                "below_run": self.below_run, "buffer": list(self.buffer), "last_value": self.last_value,
                "before_open": self.before_open}

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> "ActivationDetector":
        d = cls(s["threshold"], EnvelopeTiming(s["fs_hz"], s["hop_n"], s["window_n"]), s["channel"],
                s["min_on_s"], s["min_off_s"], s["settle_s"])
        d.n_seen, d.open_onset, d.open_end = s["n_seen"], s["open_onset"], s["open_end"]
        d.below_run, d.buffer = s["below_run"], list(s["buffer"])
        d.last_value, d.before_open = s.get("last_value"), s.get("before_open")
        return d


def detect_activations(envelope: np.ndarray, timing: EnvelopeTiming, threshold: float, channel: int = 0,
                       min_on_s: float = DEFAULT_MIN_ON_S, min_off_s: float = DEFAULT_MIN_OFF_S,
                       settle_s: float = DEFAULT_SETTLE_S) -> list[Activation]:
    """Offline detection over a whole envelope (same rule and result as the streaming detector)."""
    det = ActivationDetector(threshold, timing, channel, min_on_s, min_off_s, settle_s)
    return det.process(envelope) + det.flush()


def _crossing(low: float | None, high: float, level: float) -> float:
    """Where between two consecutive envelope samples (0 at `low`, 1 at `high`) their square
    crosses level^2, clipped to [0, 1]; 1 when `low` is unknown or not below."""
    if low is None or not low < level or not high > low:
        return 1.0
    lo2, hi2, lv2 = low * low, high * high, level * level
    return float(min(1.0, max(0.0, (lv2 - lo2) / (hi2 - lo2))))

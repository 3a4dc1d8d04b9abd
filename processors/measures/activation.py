"""Activation features of one muscle contraction, and its place in the protocol.

An activation is an interval [onset, offset) found on the RMS envelope by the
double-threshold detector (`processors.dsp.activation`: rest mean + k*SD with
minimum on/off durations; Bonato et al. 1998, IEEE TBME 45:287; Hodges & Bui
1996 for the threshold-over-baseline family). Its features:

  onset_s, offset_s   s, true EMG edges (the envelope's window delay compensated)
  duration_s          offset_s - onset_s
  peak_uv             largest envelope sample inside the activation, µV
  mean_uv             mean envelope inside it, µV
  area_uv_s           integral of the envelope over it, µV*s
  latency_s           onset_s - cue time of the task repetition it belongs to, s
                      (reaction + recruitment time; None outside a task window)
  peak_time           the peak envelope sample's window centre

Per session, active minutes (`active_minutes`): the time with muscle activity,
the length of the union over all channels of the session's activations
[onset, offset), in minutes (overlapping contractions of several muscles count
once; a dose measure of exercise, computed by the database:
`app.refresh_session_activity`).

Attribution: an activation belongs to the task repetition whose window
[start, stop + grace_s) contains its onset (grace: a movement released after the
stop cue started inside the window). Outside every window: no task, no latency.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_GRACE_S = 0.0


@dataclass(frozen=True)
class TaskSpan:
    """A task repetition's window [start_s, stop_s) on the same clock as the activations."""

    task: str
    repetition: int
    start_s: float
    stop_s: float


@dataclass(frozen=True)
class ActivationFeatures:
    onset_s: float
    offset_s: float
    peak_uv: float
    mean_uv: float
    area_uv_s: float

    @property
    def duration_s(self) -> float:
        return self.offset_s - self.onset_s


def activation_features(envelope_uv: np.ndarray, times_s: np.ndarray, onset_s: float,
                        offset_s: float) -> ActivationFeatures:
    """Features of [onset_s, offset_s) from envelope samples stamped at `times_s` (s); the area is
    the sum of the samples inside times their spacing. NaN amplitudes when no sample falls inside."""
    e = np.asarray(envelope_uv, dtype=np.float64).reshape(-1)
    t = np.asarray(times_s, dtype=np.float64).reshape(-1)
    m = (t >= onset_s) & (t < offset_s)
    if not m.any():
        return ActivationFeatures(onset_s, offset_s, float("nan"), float("nan"), float("nan"))
    dt = float(np.median(np.diff(t))) if t.size > 1 else 0.0
    v = e[m]
    return ActivationFeatures(onset_s, offset_s, float(v.max()), float(v.mean()), float(v.sum() * dt))


def task_of(onset_s: float, spans: list[TaskSpan], grace_s: float = DEFAULT_GRACE_S) -> TaskSpan | None:
    """The task repetition whose window [start, stop + grace) holds the onset (the latest one if
    windows overlap); None outside all of them."""
    hit = [s for s in spans if s.start_s <= onset_s < s.stop_s + grace_s]
    return max(hit, key=lambda s: s.start_s) if hit else None


def onset_latency_s(onset_s: float, span: TaskSpan | None) -> float | None:
    """onset - cue (task_start) in s, for an activation inside a task window; None otherwise."""
    return None if span is None else float(onset_s - span.start_s)


def active_minutes(intervals_s: list[tuple[float, float]]) -> float:
    """Length (minutes) of the union of [onset, offset) intervals (seconds)."""
    total, end = 0.0, -np.inf
    for t0, t1 in sorted(intervals_s):
        if t1 <= end:
            continue
        total += t1 - max(t0, end)
        end = t1
    return total / 60.0

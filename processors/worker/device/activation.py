"""Activations: each closed activation (detected against the causal rest baseline,
`processors.dsp.rest_baseline`) as a record attributed to the task repetition whose
window holds its onset.

Task markers and frames are not ordered: an activation is attributed when its
task's start marker is already here (`TaskMemory` keeps the last few windows,
open or closed).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import msgspec

from mimetic.domain import MUSCLES
from processors import records as R
from processors.measures.activation import TaskSpan, onset_latency_s, task_of
from processors.worker.device.common import utc
from processors.worker.device.session import Lifecycle
from processors.worker.fatigue import FatiguePart

TASKS_KEPT = 8  # task windows remembered for attribution


class TaskWindow(msgspec.Struct):
    """One task repetition's window on the device clock (µs); `stop_us` None while open."""

    session_id: str | None
    task: str
    rep: int
    start_us: int
    stop_us: int | None = None


class TaskMemory(msgspec.Struct):
    """The last task windows seen (a stop replaces its open start)."""

    recent: list[TaskWindow] = []

    def remember(self, w: TaskWindow) -> None:
        kept = [x for x in self.recent if (x.task, x.rep, x.start_us) != (w.task, w.rep, w.start_us)]
        self.recent = (kept + [w])[-TASKS_KEPT:]

    def spans(self, session_id: str | None) -> list[TaskSpan]:
        """The session's windows as `TaskSpan`s (seconds; an open window reaches to infinity)."""
        return [TaskSpan(w.task, w.rep, w.start_us / 1e6, w.stop_us / 1e6 if w.stop_us is not None else math.inf)
                for w in self.recent if w.session_id == session_id]


def activation_records(acts, *, device_id: str, session_id, t0_us: int, life: Lifecycle, tasks: TaskMemory,
                       peak_pct_mvc: Callable[[int, float], float | None] = lambda ch, peak_uv: None,
                       fatigue: FatiguePart | None = None) -> list[R.Record]:
    """Closed activations (times since the chain's start) -> records with their task repetition
    and onset latency from its cue, when the onset falls in a task window of the session, the
    peak as %MVC (`peak_pct_mvc(channel, peak µV)`) once the session's calibration is known, and
    the fatigue of a sustained one (`fatigue`: the device's spectral windows)."""
    if not acts:
        return []
    out: list[R.Record] = []
    t0 = t0_us / 1e6
    spans = tasks.spans(str(session_id) if session_id else None)
    for act in acts:
        muscle, side = life.site(act.channel)
        onset_s = t0 + act.onset_s
        span = task_of(onset_s, spans)
        out.append(R.ActivationRecord(
            device_id=device_id, session_id=session_id, channel=act.channel, muscle=muscle, side=side,
            onset=utc(onset_s), offset=utc(t0 + act.offset_s), peak_uv=float(act.peak),
            peak_time=None if act.peak_s is None else utc(t0 + act.peak_s),
            mean_uv=float(act.mean), area_uv_s=float(act.area),
            peak_pct_mvc=peak_pct_mvc(act.channel, float(act.peak)),
            task=span.task if span else None, repetition=span.repetition if span else None,
            onset_latency_s=onset_latency_s(onset_s, span),
            target=(MUSCLES.get(muscle) == span.task) if span else None,
            **(fatigue.record_fields(act) if fatigue is not None else {})))
    return out

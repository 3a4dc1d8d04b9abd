"""Session events of one device (start, end, task markers, patient reports) and the session
closes they cause: the `DeviceProcessor` methods that move `session.Lifecycle` along and
clear a session's alerts at its end (a mixin: the coordinator holds the state)."""

from __future__ import annotations

from collections.abc import Callable

from ingest.wire import PatientReport, ProAnswer, SessionEnd, SessionStart, TaskMarker
from processors import records as R
from processors.alerting import AlertTracker
from processors.pro_events import pro_record
from processors.sequencing import SequenceState
from processors.worker.device import late_frames
from processors.worker.device.activation import TaskMemory, TaskWindow
from processors.worker.device.calibration import Calibration
from processors.worker.device.common import utc
from processors.worker.device.quality import QualityFlags
from processors.worker.device.session import Lifecycle, OpenTask, Session


class SessionEvents:
    """Session event handling of `DeviceProcessor` (which provides the attributes below)."""

    device_id: str
    seq: SequenceState
    alerts: AlertTracker
    life: Lifecycle
    tasks: TaskMemory
    calib: Calibration
    flags: QualityFlags
    session: Session | None

    last_end_us: int | None
    check_clock: Callable[[int, int], None]
    _observe: Callable[..., list[R.Record]]
    _alert: Callable[..., R.AlertRecord]

    def on_event(self, ev, received_at_us: int | None = None) -> list[R.Record]:
        """A session event -> summaries, task windows, alerts; the device-clock rule first."""
        if received_at_us is not None:
            self.check_clock(ev.t_us, received_at_us)
        t_s = ev.t_us / 1e6
        out: list[R.Record] = []
        life = self.life
        if isinstance(ev, SessionStart):
            s = life.session
            if s is not None and s.session_id != str(ev.session_id):
                if s.ending_us is not None:  # ended, its last frames still to come
                    out += self._finish_closing()
                    out += self._clear_session_alerts(s.ending_us / 1e6, s.uuid)
                    life.closing, life.session, life.open_task = s, None, None
                else:
                    out += self._close_session(t_s, "ended")
            opened_s = (received_at_us if received_at_us is not None else ev.t_us) / 1e6
            life.open(ev, opened_s, self.seq.n_missing, self.seq.n_duplicates)
            out.append(self._summary("open", t_s))
        elif isinstance(ev, SessionEnd):
            s = life.session
            if s is not None and s.session_id == str(ev.session_id):
                if self.last_end_us is not None and self.last_end_us >= ev.t_us:
                    out += self._close_session(t_s, "ended")
                else:  # frames of the session's end are still on their way: close when they are in
                    s.ending_us = ev.t_us
        elif isinstance(ev, TaskMarker):
            out += self._task_marker(ev)
        elif isinstance(ev, ProAnswer):   # a patient-reported outcome from the app: stored as is
            out.append(pro_record(self.device_id, ev))
        elif isinstance(ev, PatientReport):
            if life.session is not None:
                life.session.discomfort = ev.discomfort
                life.session.skin_reaction = ev.skin_reaction
            bad = ev.discomfort >= 7 or ev.skin_reaction not in ("none",)
            if bad:
                out += self._observe("discomfort", True, t_s, value=float(ev.discomfort), session_id=ev.session_id,
                                     detail=f"discomfort {ev.discomfort}/10, skin: {ev.skin_reaction}")
        return out

    def _task_marker(self, ev: TaskMarker) -> list[R.Record]:
        life, sid = self.life, str(ev.session_id)
        if ev.type == "task_start":
            life.open_task = OpenTask(sid, ev.task, ev.repetition, ev.t_us)
            self._remember_task(TaskWindow(sid, ev.task, ev.repetition, ev.t_us, None))
            return []
        o = life.open_task
        if o is None or o.task != ev.task or o.rep != ev.repetition:
            return []
        if life.session is not None:
            life.session.tasks[ev.task] = max(life.session.tasks.get(ev.task, 0), ev.repetition)
        self._remember_task(TaskWindow(sid, ev.task, ev.repetition, o.start_us, ev.t_us))
        life.open_task = None
        return [R.TaskWindowRecord(device_id=self.device_id, session_id=ev.session_id, task=ev.task,
                                   repetition=ev.repetition, time=utc(o.start_us / 1e6), time_end=utc(ev.t_us / 1e6))]

    def _remember_task(self, w: TaskWindow) -> None:
        """For attributing activations, and (rest, calibration) for the live %MVC."""
        self.tasks.remember(w)
        self.calib.remember(w)

    def _summary(self, status: str, t_s: float, s: Session | None = None) -> R.SessionSummary:
        return self.life.summary(self.device_id, status, t_s, self.seq.n_missing, self.seq.n_duplicates, s)

    def _close_session(self, t_s: float, status: str) -> list[R.Record]:
        if self.session is None:
            return []
        out = self._clear_session_alerts(t_s, self.life.session_uuid())
        out.append(self._summary(status, t_s))
        self.life.session = None
        self.life.open_task = None
        return out

    def _clear_session_alerts(self, t_s: float, session_id) -> list[R.Record]:
        """A session's end clears every alert still active, dated at the end: each condition is
        observed again in the next session, so no alert stays open between sessions or is
        attached to a session it did not happen in (`processors.alerting`, alert semantics)."""
        out: list[R.Record] = []
        self.flags.clear()
        for kind, channel in self.alerts.active():
            for a in self.alerts.force_clear(kind, t_s, channel):
                out.append(self._alert(a, session_id))
        return out

    def _finish_closing(self) -> list[R.Record]:
        """The final summary of the session waiting for its last frames."""
        c, self.life.closing = self.life.closing, None
        if c is None or c.ending_us is None:
            return []
        return late_frames.clear_closing(self, c) + [self._summary("ended", c.ending_us / 1e6, c)]

"""Session lifecycle of one device: open, count frames, wait for the last frames, close.

Events and frames come on different topics with no order between them: a
session's frames may come before its start event (`early_frames`), and after
its end event (`Session.ending_us`: the session closes when its last frame is
in, or is kept as `closing` while the next session starts).
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

from processors import records as R
from processors.worker.device.common import INT8_MAX, utc

MAX_EARLY_SESSIONS = 4  # sessions whose frames came before their start event, remembered


class ChannelSite(msgspec.Struct):
    """Where one channel's electrodes are: muscle and side ("L"/"R")."""

    channel: int
    muscle: str
    side: str


class Session(msgspec.Struct):
    """One open (or closing) session: what its summary reports."""

    session_id: str
    therapy_type: str
    started_us: int
    last_us: int
    opened_s: float  # when it opened, on the clock of the liveness tick (receive time)
    frames: int = 0
    missing0: int = 0  # the sequence counters when it opened
    dups0: int = 0
    alerts: int = 0
    max_current: float | None = None
    discomfort: int | None = None
    skin_reaction: str | None = None
    tasks: dict[str, int] = {}  # task -> repetitions done
    affected_side: str | None = None  # "L"/"R", None when not stated
    ending_us: int | None = None  # its end event's time, while its last frames are awaited

    @property
    def uuid(self) -> uuid.UUID:
        return uuid.UUID(self.session_id)


class OpenTask(msgspec.Struct):
    """A task repetition whose start marker came and stop marker has not."""

    session_id: str
    task: str
    rep: int
    start_us: int


class Lifecycle(msgspec.Struct):
    """The sessions of one device as the worker sees them."""

    session: Session | None = None
    closing: Session | None = None  # ended, next one started, its last frames still to come
    early_frames: dict[str, int] = {}
    open_task: OpenTask | None = None
    channel_map: list[ChannelSite] = []
    limit_ua: float | None = None  # the session's stimulation current limit (None: the default)

    def session_uuid(self) -> uuid.UUID | None:
        return self.session.uuid if self.session is not None else None

    def count_frame(self, sid: str | None, last_end_us: int) -> str | None:
        """Count a frame for its session. Returns what is due: "finish_closing" (the closing
        session's last frame is in), "close" (the open session's last frame is in) or None."""
        c = self.closing
        if c is not None and sid == c.session_id:
            c.frames += 1
            c.last_us = last_end_us
            return "finish_closing" if c.ending_us is not None and last_end_us >= c.ending_us else None
        s = self.session
        if s is not None and (sid is None or sid == s.session_id):
            s.frames += 1
            s.last_us = last_end_us
            if s.ending_us is not None and last_end_us >= s.ending_us:
                return "close"
        elif sid is not None:
            self.early_frames[sid] = self.early_frames.get(sid, 0) + 1
            while len(self.early_frames) > MAX_EARLY_SESSIONS:  # sessions long gone: forget the oldest
                self.early_frames.pop(next(iter(self.early_frames)))
        return None

    def open(self, ev, opened_s: float, n_missing: int, n_duplicates: int) -> None:
        """A session_start: a new session (unless it is the open one again), its channel map and limit."""
        sid = str(ev.session_id)
        if self.session is None or self.session.session_id != sid:
            self.session = Session(
                session_id=sid, therapy_type=ev.therapy_type, started_us=ev.t_us, last_us=ev.t_us,
                opened_s=opened_s, frames=self.early_frames.pop(sid, 0), missing0=n_missing,
                dups0=n_duplicates, affected_side=side_or_none(getattr(ev, "affected_side", None)))
        self.channel_map = [ChannelSite(c.channel, c.muscle, str(getattr(c.side, "value", c.side)))
                            for c in ev.channel_map]
        self.limit_ua = ev.stimulation.current_limit_ua if ev.stimulation else None

    def site(self, channel: int) -> tuple[str, str]:
        """(muscle, side) of a channel; unmapped channels are named by number, even ones left."""
        for c in self.channel_map:
            if c.channel == channel:
                return c.muscle, c.side
        return f"channel{channel}", "L" if channel % 2 == 0 else "R"

    def summary(self, device_id: str, status: str, t_s: float, n_missing: int, n_duplicates: int,
                s: Session | None = None) -> R.SessionSummary:
        """The session's summary record ("open", "ended", "timed_out") as of device time `t_s`."""
        s = s if s is not None else self.session
        assert s is not None
        end_s = t_s if status != "open" else None
        minutes = ((end_s if end_s is not None else s.last_us / 1e6) - s.started_us / 1e6) / 60.0
        return R.SessionSummary(
            session_id=s.uuid, device_id=device_id, therapy_type=s.therapy_type,
            started_at=utc(s.started_us / 1e6), ended_at=None if end_s is None else utc(end_s), status=status,
            minutes=max(0.0, minutes), discomfort=s.discomfort,
            skin_reaction=s.skin_reaction, max_stim_current_ua=s.max_current, frames=s.frames,
            missing_frames=min(n_missing - s.missing0, INT8_MAX),
            duplicates=n_duplicates - s.dups0,
            alerts=s.alerts, tasks=dict(s.tasks), revision=0 if status == "open" else 1,
            channel_map=[msgspec.structs.asdict(c) for c in self.channel_map], computed_at=utc(t_s))


def side_or_none(v: Any) -> str | None:
    """The session's affected side as "L"/"R" (a Side or a string), None when not given."""
    v = getattr(v, "value", v)
    return v if v in ("L", "R") else None

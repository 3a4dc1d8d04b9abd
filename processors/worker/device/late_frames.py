"""Frames of a session that arrive after the next session has started (pure, on a DeviceProcessor).

Session events and frames travel on different topics, so a device's `session_end` and next
`session_start` can be processed before the last frames of the session they end. The processor
then keeps that session as `closing` until its frames are in. The rule for alerts those late
frames raise (`processors.alerting`: alerts belong to the session they happened in):

* they are attached to the frames' own session and counted in its summary, never the new one's;
* they are cleared when the closing session is finished (its last frame processed, a frame of
  another session processed, the next session start, or the liveness tick giving up on the
  frames), dated at the session's end: nothing raised in one session stays open in the next.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from processors import records as R

if TYPE_CHECKING:
    from ingest.wire import Frame
    from processors.worker.device import DeviceProcessor
    from processors.worker.device.session import Session


def finish_behind(dp: "DeviceProcessor", frame: "Frame") -> list[R.Record]:
    """Before `frame` is processed: a frame of another session than the closing one means the
    closing session's frames are over (a device's frames are delivered in sequence order)."""
    c = dp.closing
    if c is None or frame.session_id is None or str(frame.session_id) == c.session_id:
        return []
    return dp._finish_closing()


def clear_closing(dp: "DeviceProcessor", closing: "Session") -> list[R.Record]:
    """Clear the alerts raised from a closing session's late frames, at its end, in it."""
    assert closing.ending_us is not None
    sid, end_s = closing.session_id, closing.ending_us / 1e6
    out: list[R.Record] = []
    for kind, channel in dp.alerts.active_in(sid):
        out += [dp._alert(a, uuid.UUID(sid)) for a in dp.alerts.force_clear(kind, end_s, channel)]
    return out


def count_alert(dp: "DeviceProcessor", session_id, state: str) -> None:
    """Count a raised alert in its own session's summary: the closing one for its late frames."""
    if state != "raised":
        return
    c = dp.closing
    target = c if c is not None and session_id is not None and str(session_id) == c.session_id else dp.session
    if target is not None:
        target.alerts += 1

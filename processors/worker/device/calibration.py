"""Live rest level and %MVC reference of the open session, by the session analysis's definitions
(`processors.measures.normalisation`, `app.refresh_session` in migration 0013):

- rest level r of a channel: the RMS of its envelope over the session's `rest` task windows;
- MVC level of a muscle side: its activity level A = sqrt(max(P - r^2, 0)) over the session's
  `mvc_calibration` windows (all repetitions pooled), P the mean squared envelope;
- reference A_ref of a pair: the healthy side's MVC level, the stronger side's when the
  affected side is unknown; %MVC = 100 * A / A_ref.

The worker learns a task window from its markers. It pools the envelope samples whose device time
falls inside a window of the session it already knows: samples processed before the window's start
marker arrived are missed, and samples after its stop are counted until the stop marker arrives
(markers and frames come on different topics). Usually the markers come first; where they do not,
the live values differ from the session analysis, which is the stored reference. A window counts
once its stop marker is in and the frames past its stop are processed ("done"); before that, live
records carry no %MVC and the balance uses the quietest window's level as the rest level.
"""

from __future__ import annotations

import math

import msgspec
import numpy as np

from processors.measures.balance import activity_level_uv
from processors.measures.normalisation import mvc_reference_uv
from processors.worker.device.activation import TaskWindow
from processors.worker.device.session import ChannelSite

REST, MVC = "rest", "mvc_calibration"


class Pool(msgspec.Struct):
    """Per channel, the sum of squared envelope samples (µV^2) over a session's windows of one task."""

    squares: list[float] = []
    n: int = 0
    done: bool = False  # at least one window closed and its samples all seen

    def add(self, sq: np.ndarray, n: int) -> None:
        if len(self.squares) != len(sq):
            self.squares, self.n = [0.0] * len(sq), 0
        self.squares = (np.asarray(self.squares) + sq).tolist()
        self.n += n

    def mean_square(self, ch: int) -> float | None:
        return self.squares[ch] / self.n if self.n and ch < len(self.squares) else None


class Calibration(msgspec.Struct):
    """The open session's rest and calibration pools (reset when the session changes)."""

    session_id: str | None = None
    rest: Pool = msgspec.field(default_factory=Pool)
    mvc: Pool = msgspec.field(default_factory=Pool)

    def feed(self, session_id: str | None, env: np.ndarray, times_s: np.ndarray, windows: list[TaskWindow]) -> None:
        """Envelope columns (channels, n) at device times `times_s` (s) of `session_id`."""
        if session_id != self.session_id:
            self.session_id, self.rest, self.mvc = session_id, Pool(), Pool()
        if session_id is None or not len(times_s):
            return
        first_s, last_s = float(times_s[0]), float(times_s[-1])
        for w in windows:
            if w.task not in (REST, MVC) or w.session_id != session_id:
                continue
            pool = self.rest if w.task == REST else self.mvc
            start_s, stop_s = w.start_us / 1e6, math.inf if w.stop_us is None else w.stop_us / 1e6
            if last_s >= start_s and first_s < stop_s:  # the batch overlaps the window
                inside = (times_s >= start_s) & (times_s < stop_s)
                k = int(np.count_nonzero(inside))
                if k:
                    e = env[:, inside]
                    pool.add((e * e).sum(axis=1), k)
            if pool.n and last_s >= stop_s:
                pool.done = True

    def rest_uv(self, ch: int) -> float | None:
        """The rest level r (µV) of a channel once a rest window is done; None before."""
        ms = self.rest.mean_square(ch) if self.rest.done else None
        return None if ms is None else math.sqrt(ms)

    def reference_uv(self, left_ch: int, right_ch: int, affected: str | None) -> float | None:
        """A_ref (µV) of a pair once a calibration window is done (None before, or if not positive)."""
        if not self.mvc.done:
            return None
        levels = []
        for ch in (left_ch, right_ch):
            ms = self.mvc.mean_square(ch)
            if ms is None:
                return None
            levels.append(float(activity_level_uv(ms, self.rest_uv(ch) or 0.0)))
        ref = mvc_reference_uv(levels[0], levels[1], affected)
        return ref if ref > 0 else None

    def peak_pct_mvc(self, channel: int, peak_uv: float, channel_map: list[ChannelSite],
                     affected: str | None) -> float | None:
        """An activation's peak as %MVC: 100 * A(peak) / A_ref of its pair (as the session analysis)."""
        site = next((c for c in channel_map if c.channel == channel), None)
        if site is None:
            return None
        other = next((c.channel for c in channel_map if c.muscle == site.muscle and c.side != site.side), None)
        if other is None:
            return None
        left, right = (channel, other) if site.side == "L" else (other, channel)
        ref = self.reference_uv(left, right, affected)
        if ref is None:
            return None
        return 100.0 * float(activity_level_uv(peak_uv * peak_uv, self.rest_uv(channel) or 0.0)) / ref

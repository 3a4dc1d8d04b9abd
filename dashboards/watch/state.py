"""The live picture of one device: what `mimetic watch` shows, folded from records.

Pure and bounded: every collection has a fixed cap (channels, history samples,
open alerts), so no record can make it grow in proportion to a number inside it.
Times are device time in seconds since the epoch (the pipeline's clock).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ingest.wire import MAX_CHANNELS, SessionEnd, SessionStart, TaskMarker
from processors import records as R

HISTORY_S = 4.0        # envelope history kept per channel (the sparklines)
SMOOTH_S = 0.25        # the envelope value shown: mean over this much ending at the latest sample
MAX_ENV_FS_HZ = 400.0  # history capacity is sized for envelope rates up to this
MAX_ALERTS = 50        # open alerts kept (the oldest dropped beyond)
MAX_TASKS = 32         # recent task repetitions kept (markers run ahead of the envelopes)


@dataclass(frozen=True)
class Site:
    """One electrode: its channel and (muscle, side)."""

    channel: int
    muscle: str
    side: str


@dataclass
class QualityNow:
    score: float | None
    contact_ok: bool | None
    time_s: float


@dataclass
class BalanceNow:
    ai: float
    time_s: float  # start of its 1 s window


@dataclass
class TaskNow:
    """One repetition of a task: [since_s, until_s), until_s None while it runs."""

    task: str
    repetition: int
    since_s: float
    until_s: float | None = None


@dataclass
class AlertNow:
    alert_type: str
    severity: str
    channel: int | None
    raised_s: float
    message: str


@dataclass
class LiveState:
    """Everything the view draws; updated by `apply_*`."""

    device_id: str
    patient_code: str | None = None
    affected_side: str | None = None
    sites: list[Site] = field(default_factory=list)
    session_id: str | None = None
    therapy: str | None = None
    session_ended: bool = False
    history: dict[int, deque] = field(default_factory=dict)   # channel -> deque of (t_s, µV)
    latest_s: float | None = None                            # device time of the newest envelope sample
    balance: dict[str, BalanceNow] = field(default_factory=dict)
    quality: dict[int, QualityNow] = field(default_factory=dict)
    tasks: deque = field(default_factory=lambda: deque(maxlen=MAX_TASKS))  # recent TaskNow, in start order
    alerts: dict[str, AlertNow] = field(default_factory=dict)
    records: int = 0

    # --- inputs ---------------------------------------------------------------------

    def set_channel_map(self, entries: list[dict]) -> None:
        sites = []
        for e in entries[:MAX_CHANNELS]:
            try:
                sites.append(Site(int(e["channel"]), str(e["muscle"]), str(e["side"])))
            except (KeyError, TypeError, ValueError):
                continue
        if sites:
            self.sites = sorted(sites, key=lambda x: x.channel)

    def apply_envelope(self, f: R.EnvelopeFrame) -> None:
        arr = f.array
        if not (0 < f.fs_hz <= MAX_ENV_FS_HZ) or arr.shape[0] > MAX_CHANNELS:
            return
        t0 = f.time.timestamp()
        if self.latest_s is not None and t0 + HISTORY_S < self.latest_s:
            return  # older than the history shown (a replayed record)
        cap = int(HISTORY_S * MAX_ENV_FS_HZ)
        times = t0 + np.arange(arr.shape[1]) / f.fs_hz
        for ch in range(arr.shape[0]):
            h = self.history.setdefault(ch, deque(maxlen=cap))
            newer = times > h[-1][0] + 1e-6 if h else np.ones(times.shape, dtype=bool)  # no replayed sample twice
            h.extend(zip(times[newer].tolist(), arr[ch][newer].astype(np.float64).tolist()))
        if arr.shape[1]:
            last = float(times[-1])
            self.latest_s = last if self.latest_s is None else max(self.latest_s, last)
        if f.session_id is not None and str(f.session_id) != self.session_id:
            self._new_session(str(f.session_id))
        self.records += 1

    def apply_quality(self, q: R.QualityRecord) -> None:
        if 0 <= q.channel < MAX_CHANNELS:
            self.quality[q.channel] = QualityNow(q.score, q.contact_ok, q.time.timestamp())
        self.records += 1

    def apply_balance(self, b: R.BalanceRecord) -> None:
        if b.window_kind != "sliding":
            return
        t = b.time.timestamp()
        old = self.balance.get(b.muscle)
        if (old is None or t >= old.time_s) and (old is not None or len(self.balance) < MAX_CHANNELS):
            self.balance[b.muscle] = BalanceNow(b.ai, t)
        self.records += 1

    def apply_alert(self, a: R.AlertRecord) -> None:
        if a.state == "cleared":
            self.alerts.pop(a.alert_id, None)
        else:
            self.alerts[a.alert_id] = AlertNow(a.alert_type, a.severity, a.channel, a.raised_at.timestamp(),
                                               a.message)
            while len(self.alerts) > MAX_ALERTS:
                self.alerts.pop(next(iter(self.alerts)))
        self.records += 1

    def apply_summary(self, s: R.SessionSummary) -> None:
        if s.status == "open":
            if str(s.session_id) != self.session_id:
                self._new_session(str(s.session_id))
            self.therapy = s.therapy_type
            if s.channel_map:
                self.set_channel_map(s.channel_map)
        elif str(s.session_id) == self.session_id:
            self.session_ended = True

    def apply_event(self, ev: object) -> None:
        """A raw session event: the current task comes from its markers."""
        if isinstance(ev, SessionStart):
            if str(ev.session_id) != self.session_id:
                self._new_session(str(ev.session_id))
            self.therapy = ev.therapy_type
            self.set_channel_map([c.model_dump(mode="json") for c in ev.channel_map])
        elif isinstance(ev, SessionEnd) and str(ev.session_id) == self.session_id:
            self.session_ended = True
        elif isinstance(ev, TaskMarker):
            t_s = ev.t_us / 1e6
            if ev.type == "task_start":
                self.tasks.append(TaskNow(ev.task, ev.repetition, t_s))
            else:
                for span in reversed(self.tasks):
                    if (span.task, span.repetition) == (ev.task, ev.repetition) and span.until_s is None:
                        span.until_s = t_s
                        break

    def _new_session(self, session_id: str) -> None:
        self.session_id = session_id
        self.session_ended = False
        self.balance.clear()

    # --- what is shown ------------------------------------------------------------------

    def task_at(self, t_s: float | None) -> TaskNow | None:
        """The task running at device time `t_s` (the moment on screen: task markers travel
        faster than the envelopes, which pass through the worker); the newest one if unknown."""
        if t_s is None:
            return self.tasks[-1] if self.tasks and self.tasks[-1].until_s is None else None
        for span in reversed(self.tasks):
            if span.since_s <= t_s and (span.until_s is None or t_s < span.until_s):
                return span
        return None

    def value_uv(self, channel: int) -> float | None:
        """The envelope shown for a channel: its mean over (latest - SMOOTH_S, latest]."""
        h = self.history.get(channel)
        if not h or self.latest_s is None:
            return None
        lo = self.latest_s - SMOOTH_S + 1e-6
        vals = []
        for t, v in reversed(h):
            if t <= lo:
                break
            vals.append(v)
        return sum(vals) / len(vals) if vals else None

    def buckets(self, channel: int, n: int) -> list[float | None]:
        """Mean envelope in `n` equal buckets over the last HISTORY_S (oldest first)."""
        h = self.history.get(channel)
        out: list[float | None] = [None] * n
        if not h or self.latest_s is None:
            return out
        start = self.latest_s - HISTORY_S
        sums, counts = [0.0] * n, [0] * n
        for t, v in h:
            k = int((t - start) / HISTORY_S * n)
            if 0 <= k < n or (k == n and t <= self.latest_s):
                k = min(k, n - 1)
                sums[k] += v
                counts[k] += 1
        return [s / c if c else None for s, c in zip(sums, counts)]

    def pairs(self) -> list[tuple[str, Site | None, Site | None]]:
        """(muscle, left site, right site) in channel order."""
        by: dict[str, dict[str, Site]] = {}
        for s in self.sites:
            by.setdefault(s.muscle, {})[s.side] = s
        return [(m, d.get("L"), d.get("R")) for m, d in by.items()]

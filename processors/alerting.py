"""Device-fault alerts with raise/clear, hysteresis and de-duplication (pure).

A condition (over-current, electrode off, ...) is observed repeatedly for one
(device, kind, channel). It raises once it has held for `raise_after_s` and
clears once it has been false for `clear_after_s`; repeats in between emit
nothing. Thresholds with hysteresis (battery: raise below 15 %, clear above 20 %)
are expressed by the caller passing the right condition for the current state
(`AlertTracker.is_active`). The alert id is deterministic, so a replay after a
crash produces the same ids and the sink writes each alert once.

What each alert type means (`semantics_table()`, also in the README; a test keeps
both equal to `RULES`). Audience: `audience_of`. Latencies are device time from
the condition starting (ending) to the raised (cleared) record, measured by
`mimetic bench alerts` against the simulator's truth.

Two rules hold for every type: alerts are about open sessions (`device_silent`
means a device went quiet *during* one; a device between sessions, or a reading of
no open session, raises nothing), and a session's end clears every alert still
active, dated at the end, so no alert stays open between sessions, is back-dated
before its session, or is attached to a session it did not happen in.

| alert type | severity | audience | raised when | cleared when | raised within | cleared within |
|---|---|---|---|---|---|---|
| `over_current` | critical | clinic | one telemetry reading above the session's current limit | 5 s of readings at or below the limit; at the latest the session's end | 1.5 s | 7 s |
| `electrode_off` | warning | operators | impedance above MIMETIC_WORKER_ELECTRODE_OFF_KOHM, or a flat/railing 1 s quality window, for 1 s | 2 s of contact and signal back; at the latest the session's end | 3 s | 5 s |
| `impedance` | warning | operators | impedance above MIMETIC_WORKER_IMPEDANCE_MAX_KOHM (not electrode-off) for 5 s | 5 s back in range; at the latest the session's end | 7 s | 7 s |
| `battery_low` | warning | operators | a reading below MIMETIC_WORKER_BATTERY_LOW_PCT | a reading above MIMETIC_WORKER_BATTERY_CLEAR_PCT; at the latest the session's end | 1.5 s | 1.5 s |
| `device_silent` | warning | operators | no frame for MIMETIC_WORKER_SILENT_AFTER_S inside an open session (worker tick, or a device-clock jump between two frames of the session); dated silence start + that delay; a device between sessions is never silent | the next frame; at the latest the session's end | 9 s | 2 s |
| `data_gap` | warning | operators | a sequence gap declared lost (MIMETIC_WORKER_HOLD_FRAMES later frames, or the tick); the latency is for frames of 250 ms, it grows with the frame length | 10 s of frames without a new gap; at the latest the session's end | 3 s | 12 s |
| `clipping` | warning | operators | over 1 % of a 1 s window's samples at the ADC rails, for 1 s | 5 s without; at the latest the session's end | 3 s | 7.5 s |
| `mains_noise` | info | operators | the session's mains lines (detected in its frames' first 2 s) above MIMETIC_WORKER_MAINS_ALERT_UV RMS over the EMG floor beside them, for 5 s | 5 s below (a strong contraction can read over the limit for a window and restart the count); at the latest the session's end | 7.5 s | 20 s |
| `discomfort` | warning | clinic | a patient report with discomfort >= 7/10 or a skin reaction | the session's end | 0 s | 0 s |
| `sequence_restart` | info | operators | a frame opening a new sequence epoch | at once (an event, not a state) | 0 s | 0 s |
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class AlertRule:
    """One alert kind: its hysteresis, and what a user is promised about it (the semantics table).

    ``raise_within_s`` / ``clear_within_s``: the most device time from the condition starting
    (ending) to the raised (cleared) record being emitted, input period and hysteresis included;
    `mimetic bench alerts` measures them against the simulator's truth, and the tests hold them.
    """

    kind: str
    severity: str  # info | warning | critical
    raise_after_s: float
    clear_after_s: float
    meaning: str
    raises: str = ""
    clears: str = ""
    raise_within_s: float = 0.0
    clear_within_s: float = 0.0


#: what every alert's clear text ends with: a session's end clears what is still open
_AT_END = "; at the latest the session's end"

RULES: dict[str, AlertRule] = {
    r.kind: r
    for r in (
        AlertRule("over_current", "critical", 0.0, 5.0,
                  "stimulation current above the session's prescribed limit: stop stimulation, check the device",
                  "one telemetry reading above the session's current limit",
                  "5 s of readings at or below the limit" + _AT_END, 1.5, 7.0),
        AlertRule("electrode_off", "warning", 1.0, 2.0,
                  "an electrode lost skin contact (flat or railing signal, or impedance jump)",
                  "impedance above MIMETIC_WORKER_ELECTRODE_OFF_KOHM, or a flat/railing 1 s quality window, "
                  "for 1 s", "2 s of contact and signal back" + _AT_END, 3.0, 5.0),
        AlertRule("impedance_out_of_range", "warning", 5.0, 5.0,
                  "electrode-skin impedance outside the usable range: poor contact or skin trouble",
                  "impedance above MIMETIC_WORKER_IMPEDANCE_MAX_KOHM (not electrode-off) for 5 s",
                  "5 s back in range" + _AT_END, 7.0, 7.0),
        AlertRule("low_battery", "warning", 0.0, 0.0, "battery below the warning level",
                  "a reading below MIMETIC_WORKER_BATTERY_LOW_PCT",
                  "a reading above MIMETIC_WORKER_BATTERY_CLEAR_PCT" + _AT_END, 1.5, 1.5),
        AlertRule("device_silent", "warning", 0.0, 0.0, "no data from a device with an open session",
                  "no frame for MIMETIC_WORKER_SILENT_AFTER_S inside an open session (worker tick, or a "
                  "device-clock jump between two frames of the session); dated silence start + that delay; "
                  "a device between sessions is never silent",
                  "the next frame" + _AT_END, 9.0, 2.0),
        AlertRule("data_gap", "warning", 0.0, 10.0, "frames lost between device and pipeline",
                  "a sequence gap declared lost (MIMETIC_WORKER_HOLD_FRAMES later frames, or the tick); "
                  "the latency is for frames of 250 ms, it grows with the frame length",
                  "10 s of frames without a new gap" + _AT_END, 3.0, 12.0),
        AlertRule("clipping", "warning", 1.0, 5.0, "amplifier saturation: samples at the converter's limits",
                  "over 1 % of a 1 s window's samples at the ADC rails, for 1 s",
                  "5 s without" + _AT_END, 3.0, 7.5),
        AlertRule("mains_noise", "info", 5.0, 5.0, "strong mains interference (50/60 Hz): check grounding and cables",
                  "the session's mains lines (detected in its frames' first 2 s) above "
                  "MIMETIC_WORKER_MAINS_ALERT_UV RMS over the EMG floor beside them, for 5 s",
                  "5 s below (a strong contraction can read over the limit for a window and restart the "
                  "count)" + _AT_END, 7.5, 20.0),
        AlertRule("discomfort", "warning", 0.0, 0.0, "patient reported high discomfort or a skin reaction",
                  "a patient report with discomfort >= 7/10 or a skin reaction",
                  "the session's end", 0.0, 0.0),
        AlertRule("sequence_restart", "info", 0.0, 0.0,
                  "the device's frame counter started again (reboot, firmware update or new session): "
                  "a new sequence epoch, raised and cleared at once",
                  "a frame opening a new sequence epoch", "at once (an event, not a state)", 0.0, 0.0),
    )
}

#: alert kinds of the tracker -> alert types of the record contract (processors.records.ALERT_TYPES)
ALERT_TYPE_OF: dict[str, str] = {"impedance_out_of_range": "impedance", "low_battery": "battery_low"}


def semantics_table() -> str:
    """The alert semantics as a markdown table (README and module docstring; a test compares them)."""
    head = ("| alert type | severity | audience | raised when | cleared when | raised within | "
            "cleared within |\n|---|---|---|---|---|---|---|")
    rows = []
    for r in RULES.values():
        t = ALERT_TYPE_OF.get(r.kind, r.kind)
        rows.append(f"| `{t}` | {r.severity} | {audience_of(t)} | {r.raises} | {r.clears} | "
                    f"{r.raise_within_s:g} s | {r.clear_within_s:g} s |")
    return "\n".join([head, *rows])


#: alert types (processors.records.ALERT_TYPES) about the patient's safety or comfort: the
#: notifier sends them to the patient's clinic; every other type goes to the operators
PATIENT_SAFETY_TYPES: frozenset[str] = frozenset({"over_current", "discomfort", "skin_reaction"})


def audience_of(alert_type: str) -> str:
    """Who is told about an alert type: ``clinic`` (patient safety) or ``operators``."""
    return "clinic" if alert_type in PATIENT_SAFETY_TYPES else "operators"


@dataclass(frozen=True)
class AlertEvent:
    alert_id: str
    device_id: str
    kind: str
    severity: str
    channel: int | None
    state: str  # raised | cleared
    time_s: float  # device/event time of the transition, seconds since the epoch
    value: float | None
    message: str


@dataclass
class _Cond:
    active: bool = False
    true_since: float | None = None
    false_since: float | None = None
    raised_at: float | None = None
    last_value: float | None = None
    session: str | None = None  # the session the active alert was raised in (`AlertTracker.mark`)


@dataclass
class AlertTracker:
    """Alert state of one device (plain data, kept in a stream table)."""

    device_id: str
    conds: dict[str, _Cond] = field(default_factory=dict)

    @staticmethod
    def _key(kind: str, channel: int | None) -> str:
        return f"{kind}:{'' if channel is None else channel}"

    def is_active(self, kind: str, channel: int | None = None) -> bool:
        c = self.conds.get(self._key(kind, channel))
        return bool(c and c.active)

    def active(self) -> list[tuple[str, int | None]]:
        out = []
        for key, c in self.conds.items():
            if c.active:
                kind, ch = key.split(":")
                out.append((kind, int(ch) if ch else None))
        return out

    def mark(self, kind: str, channel: int | None, session: str | None) -> None:
        """Remember the session an alert was raised in (it is cleared in that session)."""
        c = self.conds.get(self._key(kind, channel))
        if c is not None:
            c.session = session

    def active_in(self, session: str) -> list[tuple[str, int | None]]:
        """The active alerts raised in `session`."""
        return [(k, ch) for k, ch in self.active() if self.conds[self._key(k, ch)].session == session]

    def observe(self, kind: str, condition: bool, time_s: float, value: float | None = None,
                channel: int | None = None, detail: str = "") -> list[AlertEvent]:
        """Feed one observation; returns the raise/clear transitions it causes (usually none)."""
        rule = RULES[kind]
        c = self.conds.setdefault(self._key(kind, channel), _Cond())
        if condition:
            c.false_since = None
            c.last_value = value
            if c.true_since is None:
                c.true_since = time_s
            if not c.active and time_s - c.true_since >= rule.raise_after_s:
                c.active = True
                c.raised_at = c.true_since
                return [self._event(rule, channel, "raised", c.raised_at, value, detail)]
        else:
            c.true_since = None
            if c.active:
                if c.false_since is None:
                    c.false_since = time_s
                if time_s - c.false_since >= rule.clear_after_s:
                    c.active = False
                    return [self._event(rule, channel, "cleared", time_s, value, detail)]
        return []

    def force_clear(self, kind: str, time_s: float, channel: int | None = None) -> list[AlertEvent]:
        """Clear an active alert now, whatever its clear delay (its session ended)."""
        c = self.conds.get(self._key(kind, channel))
        if c is None or not c.active:
            return []
        c.active, c.true_since, c.false_since = False, None, None
        return [self._event(RULES[kind], channel, "cleared", time_s, None, "session ended")]

    def _event(self, rule: AlertRule, channel: int | None, state: str, time_s: float, value: float | None,
               detail: str) -> AlertEvent:
        c = self.conds[self._key(rule.kind, channel)]
        raised_ms = int(round((c.raised_at or time_s) * 1000))
        alert_id = f"{self.device_id}|{rule.kind}|{'' if channel is None else channel}|{raised_ms}"
        where = f" (channel {channel})" if channel is not None else ""
        msg = f"{rule.kind}{where} {state}: {rule.meaning}" + (f"; {detail}" if detail else "")
        return AlertEvent(alert_id, self.device_id, rule.kind, rule.severity, channel, state, time_s, value, msg)

    def to_state(self) -> dict:
        return {"device_id": self.device_id,
                "conds": {k: [c.active, c.true_since, c.false_since, c.raised_at, c.last_value, c.session]
                          for k, c in self.conds.items()}}

    @classmethod
    def from_state(cls, d: dict) -> "AlertTracker":
        t = cls(d["device_id"])
        for k, v in d["conds"].items():  # 5 fields: a state saved before `session`
            t.conds[k] = _Cond(*v)
        return t

"""What the parts of a device's processing share: the knobs, the alert hook, the clock.

The parts (`session`, `balance`, `activation`, `quality`, `telemetry`) hold
typed state and return derived records; alerts go through the coordinator's
`AlertHook`, which counts them for the open session and dates them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Protocol

from mimetic.config import Settings
from processors import records as R
from processors.alerting import ALERT_TYPE_OF, AlertEvent, AlertTracker
from processors.worker.fatigue import DEFAULT_MIN_S as FATIGUE_MIN_S

INT4_MAX = 2**31 - 1  # stream_stats counters are integer columns
INT8_MAX = 2**63 - 1


def utc(t_s: float) -> datetime:
    return datetime.fromtimestamp(t_s, tz=timezone.utc)


@dataclass(frozen=True)
class WorkerParams:
    """The knobs of the per-device processing (from Settings)."""

    hold_frames: int = 4
    mains_hz: float = 50.0
    window_s: float = 0.1
    hop_s: float = 0.025
    silent_after_s: float = 5.0
    session_timeout_s: float = 300.0
    current_limit_ua: float = 600.0
    impedance_max_kohm: float = 50.0
    battery_low_pct: float = 15.0
    battery_clear_pct: float = 20.0
    mains_alert_uv: float = 20.0
    electrode_off_kohm: float = 1000.0
    stim_slope_uv: float = 250.0
    clock_max_future_s: float = 300.0
    clock_max_age_s: float = 7 * 86400.0
    fatigue_min_s: float = FATIGUE_MIN_S

    @classmethod
    def from_settings(cls, s: Settings) -> "WorkerParams":
        return cls(s.worker_hold_frames, s.worker_mains_hz, s.worker_envelope_window_s, s.worker_envelope_hop_s,
                   s.worker_silent_after_s, s.worker_session_timeout_s, s.worker_current_limit_ua,
                   s.worker_impedance_max_kohm, s.worker_battery_low_pct, s.worker_battery_clear_pct,
                   s.worker_mains_alert_uv, s.worker_electrode_off_kohm, s.worker_stim_slope_uv,
                   s.clock_max_future_s, s.clock_max_age_s, s.fatigue_min_s)


class AlertHook(Protocol):
    """Observe one alert condition; the alert records it raises or clears (the coordinator's)."""

    def __call__(self, kind: str, condition: bool, t_s: float, *, session_id=None,
                 threshold: float | None = None, value: float | None = None, channel: int | None = None,
                 detail: str = "") -> list[R.Record]: ...


def set_flag(flags: list[bool], i: int, value: bool) -> list[bool]:
    """`flags` with flags[i] = value, grown with False as needed."""
    if i >= len(flags):
        flags = flags + [False] * (i + 1 - len(flags))
    flags[i] = value
    return flags


def alert_record(device_id: str, tracker: AlertTracker, ev: AlertEvent, session_id,
                 threshold: float | None) -> R.AlertRecord:
    """An alert transition as its record, keyed by when the condition was raised."""
    c = tracker.conds[tracker._key(ev.kind, ev.channel)]
    raised_at = utc(c.raised_at if c.raised_at is not None else ev.time_s)
    kind = ALERT_TYPE_OF.get(ev.kind, ev.kind)
    return R.AlertRecord(
        alert_id=R.alert_id(device_id, kind, raised_at, ev.channel), device_id=device_id,
        session_id=session_id, alert_type=kind, severity=ev.severity, state=ev.state, time=utc(ev.time_s),
        raised_at=raised_at, channel=ev.channel, value=ev.value, threshold=threshold, message=ev.message)

"""Telemetry of one device (its record and the alerts of an open session: over-current, low
battery, electrode contact, impedance) and the stream statistics counted between records."""

from __future__ import annotations

import msgspec

from ingest.wire import Telemetry
from processors import records as R
from processors.worker.device.common import INT4_MAX, AlertHook, WorkerParams, set_flag, utc
from processors.worker.device.quality import QualityFlags
from processors.worker.device.session import Session


class StreamCounters(msgspec.Struct):
    """Counts since the last `StreamStats` record."""

    frames: int = 0
    samples: int = 0
    gaps: int = 0
    missing_frames: int = 0
    duplicates: int = 0
    late: int = 0
    dead_lettered: int = 0
    restarts: int = 0
    clock_refused: int = 0

    def any(self) -> bool:
        return any(msgspec.structs.astuple(self))

    def take(self) -> dict[str, int]:
        """The counts (int4 counters saturated at the column's maximum; samples is int8), then zero."""
        counts = {k: v if k == "samples" else min(v, INT4_MAX) for k, v in msgspec.structs.asdict(self).items()}
        for k in self.__struct_fields__:
            setattr(self, k, 0)
        return counts


def telemetry_records(t: Telemetry, session: Session | None, flags: QualityFlags, limit_ua: float,
                      p: WorkerParams, alert: AlertHook, *, device_id: str, session_id,
                      low_battery_active: bool) -> list[R.Record]:
    """A reading -> its record; alerts only for a reading of the open session (a reading of none,
    or of another session, is only stored). `low_battery_active`: the alert is raised (it clears
    above a higher level than it rises below)."""
    t_s = t.t_us / 1e6
    out: list[R.Record] = [R.TelemetryRecord(
        device_id=device_id, time=utc(t_s), seq=t.seq, battery_pct=t.battery_pct,
        temperature_c=t.temperature_c, impedance_kohm=t.impedance_kohm, stim_current_ua=t.stim_current_ua,
        signal_strength_dbm=t.signal_strength_dbm, firmware_errors=list(t.firmware_errors) or None)]
    if session is None or (t.session_id is not None and str(t.session_id) != session.session_id):
        return out
    sid = session_id
    if t.stim_current_ua is not None:
        over = t.stim_current_ua > limit_ua
        session.max_current = max(session.max_current or 0.0, t.stim_current_ua)
        out += alert("over_current", over, t_s, value=t.stim_current_ua, session_id=sid, threshold=limit_ua,
                     detail=f"{t.stim_current_ua:.0f} µA, limit {limit_ua:.0f} µA")
    if t.battery_pct is not None:
        low = t.battery_pct < (p.battery_clear_pct if low_battery_active else p.battery_low_pct)
        out += alert("low_battery", low, t_s, value=t.battery_pct, session_id=sid, threshold=p.battery_low_pct)
    for ch, z in enumerate(t.impedance_kohm or []):
        lost = z > p.electrode_off_kohm
        flags.contact_lost = set_flag(flags.contact_lost, ch, lost)
        out += alert("electrode_off", lost or not flags.signal(ch), t_s, value=z, channel=ch, session_id=sid,
                     threshold=p.electrode_off_kohm, detail=f"impedance {z:.0f} kΩ")
        bad = z > p.impedance_max_kohm and not lost
        out += alert("impedance_out_of_range", bad, t_s, value=z, channel=ch, session_id=sid,
                     threshold=p.impedance_max_kohm)
    return out

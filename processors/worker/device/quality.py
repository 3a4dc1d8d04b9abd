"""Signal quality of one device: per-window quality records with their electrode/clipping
alerts, the mains frequency to notch (detected from each session's first frames) and the
`mains_noise` alert from the notched lines' strength.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec
import numpy as np

from processors import records as R
from processors.dsp.mains import LineMeter, decide, detector
from processors.worker.device.balance import RestBaseline
from processors.worker.device.common import AlertHook, set_flag, utc
from processors.worker.device.session import Lifecycle


class QualityFlags(msgspec.Struct):
    """Per channel, why an electrode is off: no signal (quality window), no contact (impedance)."""

    signal_off: list[bool] = []
    contact_lost: list[bool] = []

    def clear(self) -> None:
        """Observed afresh in the next session."""
        self.signal_off, self.contact_lost = [], []

    def contact(self, ch: int) -> bool:
        return not (ch < len(self.contact_lost) and self.contact_lost[ch])

    def signal(self, ch: int) -> bool:
        return not (ch < len(self.signal_off) and self.signal_off[ch])


def quality_records(windows, flags: QualityFlags, rest: RestBaseline, life: Lifecycle, alert: AlertHook, *,
                    device_id: str, session_id, t0_us: int) -> list[R.Record]:
    """The chain's quality windows (times since its start) -> quality records and alerts."""
    out: list[R.Record] = []
    for q in windows:
        t0 = t0_us / 1e6 + q.start_s
        for ch in range(len(q.rms_uv)):
            muscle, side = life.site(ch)
            base = rest.base(ch)
            rms = float(q.rms_uv[ch])
            snr = 20 * math.log10(rms / base) if base and base > 0 and rms > 0 else None
            clip = None if q.clipping_fraction is None else float(q.clipping_fraction[ch])
            off = bool(q.electrode_off[ch])
            mains = float(q.mains_power_ratio[ch])
            flags.signal_off = set_flag(flags.signal_off, ch, off)
            contact_lost = not flags.contact(ch)
            score = 1.0
            if off:
                score = 0.0
            else:
                score -= min(0.5, mains) + min(0.3, 10 * (clip or 0.0)) + min(0.2, float(q.lowfreq_power_ratio[ch]) / 2)
            named = not muscle.startswith("channel")
            out.append(R.QualityRecord(
                device_id=device_id, session_id=session_id, time=utc(t0),
                window_s=q.duration_s, channel=ch, muscle=muscle if named else None, side=side if named else None,
                rms_uv=rms, baseline_uv=base, snr_db=snr, mains_ratio=mains, clipping_frac=clip,
                flatline_frac=float(q.flat_fraction[ch]), contact_ok=not off, score=max(0.0, score)))
            for kind, cond, value in (("electrode_off", off or contact_lost, float(q.raw_sd_uv[ch])),
                                      ("clipping", (clip or 0.0) > 0.01, clip)):
                out += alert(kind, cond, t0 + q.duration_s, value=value, channel=ch, session_id=session_id)
    return out


class MainsState(msgspec.Struct):
    """The mains frequency notched, and the meters of its detection and of its residue.

    Decided from the frames alone (the first seconds of each session's frames), never from when
    a session event arrives, so the envelopes do not depend on how the event and frame topics
    interleave (a replay after a crash must give the same rows). `det`/`meter` hold `LineMeter`s
    (their `to_state` dicts in a saved state).
    """

    hz: float | None = None  # detected; None: the configured default
    detecting: bool = False
    session: str | None = None  # the session whose first frames the detector has seen
    det: Any = None
    meter: Any = None

    def __post_init__(self) -> None:
        if isinstance(self.det, dict):
            self.det = LineMeter.from_state(self.det)
        if isinstance(self.meter, dict):
            self.meter = LineMeter.from_state(self.meter)

    def saved(self) -> "MainsState":
        """A copy whose meters are plain state (for the encoder)."""
        return msgspec.structs.replace(self, det=None if self.det is None else self.det.to_state(),
                                       meter=None if self.meter is None else self.meter.to_state())

    def detect(self, session_id: str | None, fs_hz: float, n_channels: int, x_uv: np.ndarray) -> None:
        """Feed the session's first seconds to the detector; at its end, notch what it found
        (the chain is rebuilt when that differs: a one-window transient, in the rest period)."""
        if session_id is not None and session_id != self.session:  # a session's first frame: detect anew
            self.session, self.detecting, self.det = session_id, True, None
        if not self.detecting:
            return
        det = self.det
        if det is None or det.fs_hz != fs_hz or det.n_channels != n_channels:
            det = self.det = detector(float(fs_hz), n_channels)
        for w in det.feed(x_uv):
            self.hz = decide(w) or self.hz
            self.detecting, self.det = False, None

    def noise(self, x_uv: np.ndarray, *, fs_hz: float, t_us: int, mains_hz: float, limit_uv: float,
              alert: AlertHook, session_id) -> list[R.Record]:
        """`mains_noise` per channel from the notched lines' strength over the EMG floor beside
        them (`processors.dsp.mains`), one observation per 1 s window, dated at its end."""
        n_channels = x_uv.shape[0]
        m = self.meter
        if m is None or m.fs_hz != fs_hz or m.n_channels != n_channels or m.fundamentals_hz != (mains_hz,):
            m = self.meter = LineMeter(float(fs_hz), n_channels, (mains_hz,))
        out: list[R.Record] = []
        for w in m.feed(x_uv):
            t_s = (t_us + w.end_index * 1e6 / fs_hz) / 1e6
            for ch in range(n_channels):
                uv = float(w.excess_uv[ch, 0])
                out += alert("mains_noise", uv > limit_uv, t_s, value=uv, channel=ch, session_id=session_id,
                             threshold=limit_uv, detail=f"{uv:.0f} µV RMS at {mains_hz:g} Hz and harmonics")
        return out

"""Everything the pipeline knows about one device, as one state object.

`DeviceProcessor` turns a device's raw records (frames, telemetry, session
events) into derived records (`processors.records`). It wires the pure parts
together (sequence rule, DSP chain, alert tracker) and holds no Kafka or
database code, so the Faust agent, the tests and offline tools share it.

Determinism matters: every output is a function of the inputs and the state, and
times come from the device clock, never the wall clock (except the liveness
check `on_tick`, whose outputs are keyed by device time too). A replay after a
crash therefore reproduces the same records and keys, and the idempotent sink
stores each once.

What is computed where:
- here, per frame: conditioning, envelopes, quality windows, sliding left/right
  balance (1 s windows), activations (double threshold over a rest baseline
  learned from the quietest second so far), alerts, stream statistics, session
  lifecycle and task windows;
- in the database, per task window and session (SQL over `envelope` and
  `task_window`): task-window and repetition balance, per-session asymmetry and
  synkinesis. Task markers and frames arrive on different topics with no order
  between them, so the exact window statistics are taken where both are stored.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import msgspec
import numpy as np

from ingest.wire import (Frame, PatientReport, SessionEnd, SessionStart, TaskMarker, Telemetry, WireError,
                         check_device_clock, decode_frame)
from mimetic.config import Settings
from mimetic.domain import MUSCLES
from processors import records as R
from processors.alerting import ALERT_TYPE_OF, AlertEvent, AlertTracker
from processors.dsp.chain import ChainConfig, MultiChannelChain
from processors.dsp.mains import LineMeter, decide, detector
from processors.dsp.stim_pulses import remove_biphasic_pulses
from processors.measures.activation import TaskSpan, onset_latency_s, task_of
from processors.measures.balance import (activity_level_uv, affected_ratio, asymmetry_index, optional,
                                         pair_active)
from processors.sequencing import Delivery, SequenceState, accept, flush
from processors.worker import late_frames

STATE_VERSION = 4
BALANCE_WINDOW_S = 1.0
ACTIVATION_K = 3.0  # threshold = rest mean + k * SD
MIN_REST_WINDOWS = 3  # windows seen before activation detection starts
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

    @classmethod
    def from_settings(cls, s: Settings) -> "WorkerParams":
        return cls(s.worker_hold_frames, s.worker_mains_hz, s.worker_envelope_window_s, s.worker_envelope_hop_s,
                   s.worker_silent_after_s, s.worker_session_timeout_s, s.worker_current_limit_ua,
                   s.worker_impedance_max_kohm, s.worker_battery_low_pct, s.worker_battery_clear_pct,
                   s.worker_mains_alert_uv, s.worker_electrode_off_kohm, s.worker_stim_slope_uv,
                   s.clock_max_future_s, s.clock_max_age_s)


class DeviceProcessor:
    """One device's pipeline state; `on_*` methods return derived records."""

    def __init__(self, device_id: str, params: WorkerParams):
        self.device_id = device_id
        self.p = params
        self.seq = SequenceState()
        self.chain: MultiChannelChain | None = None
        self.t0_us: int | None = None  # device time of the chain's first sample
        self.last_end_us: int | None = None  # device time just after the last processed sample
        self.alerts = AlertTracker(device_id)
        self.session: dict[str, Any] | None = None
        self.channel_map: list[dict[str, Any]] = []  # [{channel, muscle, side}]
        self.limit_ua: float = params.current_limit_ua
        # sliding balance: envelope sums per channel for the current 1 s window
        self.win_index: int | None = None
        self.win_sum: list[float] = []
        self.win_n = 0
        # rest baseline per channel: the quietest window seen (mean, sd of the envelope)
        self.rest_mean: list[float] | None = None
        self.rest_sd: list[float] | None = None
        self.windows_seen = 0
        self.win_sq: list[float] = []
        # stream statistics since the last StreamStats record
        self.stats = {"frames": 0, "samples": 0, "gaps": 0, "missing_frames": 0, "duplicates": 0, "late": 0,
                      "dead_lettered": 0, "restarts": 0, "clock_refused": 0}
        self.open_task: dict[str, Any] | None = None
        #: the last task windows seen (open or closed, device-clock µs), for attributing activations
        self.recent_tasks: list[dict[str, Any]] = []
        self.last_arrival_s: float | None = None  # gateway receive time of the last frame (record header)
        self.rev = 0
        self.signal_off: list[bool] = []  # per channel, from the last quality window
        self.contact_lost: list[bool] = []  # per channel, from the last impedance reading
        self.prev_last_uv: list[float] | None = None  # last sample of the previous frame (pulse shapes)
        #: per input topic (a short code), the offset of the last record applied to this state: a record
        #: redelivered after a crash, whose effect the saved state already holds, is recognised by it
        self.applied: dict[str, int] = {}
        #: frames of sessions whose start event has not arrived yet (events and frames are not ordered)
        self.early_frames: dict[str, int] = {}
        #: a session whose end event came, and the next session's start after it, before its last frames
        self.closing: dict[str, Any] | None = None
        #: the mains frequency notched: detected in the first seconds of each session's frames (None:
        #: the configured default). Decided from the frames alone, never from when a session event
        #: arrives, so the envelopes do not depend on how the event and frame topics interleave
        #: (a replay after a crash must give the same rows)
        self.mains_hz: float | None = None
        self.detect_mains = False
        self.mains_det: LineMeter | None = None
        #: the session whose first frames the detector has seen (frames carry their session)
        self.mains_session: str | None = None
        #: strength of the notched mains lines per 1 s window (the `mains_noise` alert)
        self.mains_meter: LineMeter | None = None

    # --- raw inputs -------------------------------------------------------------

    def on_frame(self, frame: Frame, wire: bytes, received_at_us: int | None = None
                 ) -> tuple[list[R.Record], list[str]]:
        """A decoded frame (and its wire bytes, held while reordering). Returns (records, late reasons).

        With ``received_at_us`` (the gateway's receive time) the device-clock rule is applied first:
        a frame it refuses raises WireError (``clock_future``/``clock_past``) and changes nothing
        but the counters.
        """
        if received_at_us is not None:
            self.check_clock(frame.t_us, received_at_us)
        out: list[R.Record] = []
        late: list[str] = []
        sid = str(frame.session_id) if frame.session_id else None
        d = accept(self.seq, frame.seq, wire, self.p.hold_frames, t_us=frame.t_us, session=sid,
                   resent=frame.resent)
        if d.duplicate:
            self.stats["duplicates"] += 1
        if d.late:
            self.stats["late"] += 1
            self.stats["dead_lettered"] += 1
            late.append(f"late frame seq {frame.seq}: its gap was already declared lost, or it is older "
                        "than the device's sequence epoch")
        out += self._deliver(d, frame)
        return out, late

    def check_clock(self, t_us: int, received_at_us: int) -> None:
        """The device-clock rule (`ingest.wire.check_device_clock`); a refusal is counted, then raised."""
        try:
            check_device_clock(t_us, received_at_us, self.p.clock_max_future_s, self.p.clock_max_age_s)
        except WireError:
            self.stats["clock_refused"] += 1
            raise

    def _deliver(self, d: Delivery, arriving: Frame | None) -> list[R.Record]:
        out: list[R.Record] = []
        for first_missing, missing in d.gaps:
            self.stats["gaps"] += 1
            self.stats["missing_frames"] += missing
            t_s = (self.last_end_us or 0) / 1e6
            for ev in self.alerts.observe("data_gap", True, t_s, value=float(missing),
                                          detail=f"{missing} frames from seq {first_missing} lost"):
                out.append(self._alert(ev))
            self._reset_chain()  # no bridging across missing samples
        for i, (seq, wire) in enumerate(d.frames):
            frame = arriving if arriving is not None and seq == arriving.seq else decode_frame(wire)
            if i == d.restart_at:
                out += self._restart(frame, d.restart_reason)
            out += self._process(frame)
        return out

    def _restart(self, frame: Frame, reason: str) -> list[R.Record]:
        """The device's counter restarted at this frame: new filters, counted, an info alert."""
        self.stats["restarts"] += 1
        self._reset_chain()
        self.last_end_us = None  # the new epoch's time is not compared with the old one's
        t_s = frame.t_us / 1e6
        detail = f"counter restarted at seq {frame.seq} ({reason.replace('_', ' ')})"
        sid = frame.session_id or self._session_uuid()
        out = [self._alert(ev, sid) for ev in self.alerts.observe("sequence_restart", True, t_s,
                                                                   value=float(frame.seq), detail=detail)]
        out += [self._alert(ev, sid) for ev in self.alerts.observe("sequence_restart", False, t_s)]
        return out

    def _count_frame(self, sid: str | None) -> list[R.Record]:
        """Count a frame for its session; close a session whose end event waited for its last frames."""
        c = self.closing
        if c is not None and sid == c["session_id"]:
            c["frames"] += 1
            c["last_us"] = self.last_end_us
            return self._finish_closing() if self.last_end_us >= c["ending_us"] else []
        s = self.session
        if s is not None and (sid is None or sid == s["session_id"]):
            s["frames"] += 1
            s["last_us"] = self.last_end_us
            if s.get("ending_us") is not None and self.last_end_us >= s["ending_us"]:
                return self._close_session(s["ending_us"] / 1e6, "ended")
        elif sid is not None:
            self.early_frames[sid] = self.early_frames.get(sid, 0) + 1
            while len(self.early_frames) > 4:  # frames of sessions long gone: forget the oldest
                self.early_frames.pop(next(iter(self.early_frames)))
        return []

    def _session_uuid(self) -> uuid.UUID | None:
        return uuid.UUID(self.session["session_id"]) if self.session else None

    def _reset_chain(self) -> None:
        self.chain = None
        self.mains_meter = None
        self.prev_last_uv = None
        self.t0_us = None
        self.win_index = None

    def _detect_mains(self, frame: Frame, x_uv: np.ndarray) -> None:
        """Feed the session's first seconds to the mains detector; at its end, notch what it found
        (the chain is rebuilt when that differs: a one-window transient, in the rest period)."""
        sid = None if frame.session_id is None else str(frame.session_id)
        if sid is not None and sid != self.mains_session:  # a session's first frame: detect anew
            self.mains_session, self.detect_mains, self.mains_det = sid, True, None
        if not self.detect_mains:
            return
        det = self.mains_det
        if det is None or det.fs_hz != frame.fs_hz or det.n_channels != frame.n_channels:
            det = self.mains_det = detector(float(frame.fs_hz), frame.n_channels)
        for w in det.feed(x_uv):
            self.mains_hz = decide(w) or self.mains_hz
            self.detect_mains, self.mains_det = False, None

    def _silence_in_session(self, frame: Frame) -> bool:
        """Whether the gap before `frame` lies inside the open session: a device between sessions
        (its previous frame before the session started, or the frame of another session) is not silent."""
        s = self.session
        if s is None or self.last_end_us is None or self.last_end_us < s["started_us"]:
            return False
        return frame.session_id is None or str(frame.session_id) == s["session_id"]

    def _process(self, frame: Frame) -> list[R.Record]:
        out: list[R.Record] = late_frames.finish_behind(self, frame)
        t_start_s = frame.t_us / 1e6
        # silence detected from the data itself: the device clock jumped inside one open session
        if self.last_end_us is not None and frame.t_us - self.last_end_us > self.p.silent_after_s * 1e6:
            if self._silence_in_session(frame):
                for ev in self.alerts.observe("device_silent", True, self.last_end_us / 1e6 + self.p.silent_after_s,
                                              detail="no frames from the device"):
                    out.append(self._alert(ev))
            self._reset_chain()
        elif self.last_end_us is not None and abs(frame.t_us - self.last_end_us) > 1e6 * 0.5 * frame.n_samples / frame.fs_hz:
            self._reset_chain()  # a discontinuity in the device clock: restart the filters
        for kind in ("device_silent", "data_gap"):
            for ev in self.alerts.observe(kind, False, t_start_s):
                out.append(self._alert(ev))
        x_uv = frame.microvolts()
        if frame.stim_active:  # pulses at 10-30 Hz have harmonics on the mains lines: remove them first
            x_uv, _n_pulses = remove_biphasic_pulses(x_uv, prev_uv=self.prev_last_uv)
        self._detect_mains(frame, x_uv)
        mains_hz = self.mains_hz or self.p.mains_hz
        if (self.chain is None or self.chain.cfg.fs_hz != frame.fs_hz
                or self.chain.cfg.n_channels != frame.n_channels or self.chain.cfg.mains_hz != mains_hz):
            self.chain = MultiChannelChain(ChainConfig(
                fs_hz=float(frame.fs_hz), n_channels=frame.n_channels, mains_hz=mains_hz,
                window_s=self.p.window_s, hop_s=self.p.hop_s,
                full_scale_uv=(-32768 * float(np.float32(frame.scale_uv)), 32767 * float(np.float32(frame.scale_uv))),
                stim_slope_uv=self.p.stim_slope_uv))
            self.t0_us = frame.t_us
            self.win_index = None
            if self.rest_mean is not None and len(self.rest_mean) == frame.n_channels:
                self._arm_detectors()
        # blank stimulation pulses only while the device says stimulation is on
        if self.chain.blanker is not None:
            self.chain.blanker.slope_uv = self.p.stim_slope_uv if frame.stim_active else math.inf
        self.prev_last_uv = x_uv[:, -1].tolist()
        res = self.chain.process(x_uv)
        self.last_end_us = frame.t_us + frame.duration_us
        self.stats["frames"] += 1
        self.stats["samples"] += frame.n_samples * frame.n_channels
        session_id = frame.session_id or self._session_uuid()
        out += self._count_frame(str(frame.session_id) if frame.session_id else None)
        env = res.envelope_uv
        if env.shape[1]:
            t_env0 = self.t0_us / 1e6 + float(res.envelope_times_s[0])
            rails = (frame.samples >= 32767) | (frame.samples <= -32768)
            clipped = sum(1 << int(ch) for ch in np.flatnonzero(rails.any(axis=1)) if ch < 31)
            out.append(R.EnvelopeFrame.from_array(
                env, device_id=self.device_id, session_id=session_id, seq=frame.seq, time=utc(t_env0),
                fs_hz=1.0 / self.p.hop_s, clipped=clipped, stim_blanked=res.blanked_samples > 0))
            out += self._sliding_balance(env, res.envelope_times_s, session_id)
        for act in res.activations:
            out.append(self._activation(act, session_id))
        for q in res.quality:
            out += self._quality(q, session_id)
        out += self._mains_noise(frame, x_uv, mains_hz, session_id)
        return out

    def _mains_noise(self, frame: Frame, x_uv: np.ndarray, mains_hz: float, session_id) -> list[R.Record]:
        """`mains_noise` per channel from the notched mains lines' strength over the EMG floor beside
        them (`processors.dsp.mains`), one observation per 1 s window, dated at its end."""
        m = self.mains_meter
        if (m is None or m.fs_hz != frame.fs_hz or m.n_channels != frame.n_channels
                or m.fundamentals_hz != (mains_hz,)):
            m = self.mains_meter = LineMeter(float(frame.fs_hz), frame.n_channels, (mains_hz,))
        out: list[R.Record] = []
        for w in m.feed(x_uv):
            t_s = (frame.t_us + w.end_index * 1e6 / frame.fs_hz) / 1e6
            for ch in range(frame.n_channels):
                uv = float(w.excess_uv[ch, 0])
                for ev in self.alerts.observe("mains_noise", uv > self.p.mains_alert_uv, t_s, value=uv, channel=ch,
                                              detail=f"{uv:.0f} µV RMS at {mains_hz:g} Hz and harmonics"):
                    out.append(self._alert(ev, session_id, threshold=self.p.mains_alert_uv))
        return out

    # --- sliding balance and rest baseline -----------------------------------------

    def _sliding_balance(self, env: np.ndarray, times_s: np.ndarray, session_id) -> list[R.Record]:
        out: list[R.Record] = []
        idx = np.floor(times_s / BALANCE_WINDOW_S).astype(np.int64).tolist()
        ws = wq = None  # the window's sums as arrays while adding (sample by sample: same rounding as floats)
        for j, w in enumerate(idx):
            if self.win_index is None or w != self.win_index:
                if ws is not None:
                    self.win_sum, self.win_sq = ws.tolist(), wq.tolist()
                if self.win_index is not None:
                    out += self._close_window(session_id)
                self._open_window(w, env.shape[0])
                ws = wq = None
            if ws is None:
                ws, wq = np.array(self.win_sum, dtype=np.float64), np.array(self.win_sq, dtype=np.float64)
            col = env[:, j]
            ws += col
            wq += col * col
            self.win_n += 1
        if ws is not None:
            self.win_sum, self.win_sq = ws.tolist(), wq.tolist()
        return out

    def _open_window(self, w: int, n: int) -> None:
        self.win_index = w
        self.win_sum = [0.0] * n
        self.win_sq = [0.0] * n
        self.win_n = 0

    def _close_window(self, session_id) -> list[R.Record]:
        out: list[R.Record] = []
        if self.win_n == 0 or self.t0_us is None:
            return out
        full_n = int(round(BALANCE_WINDOW_S / self.p.hop_s))
        means = [s / self.win_n for s in self.win_sum]
        if self.win_n >= full_n:
            sds = [math.sqrt(max(q / self.win_n - m * m, 0.0)) for q, m in zip(self.win_sq, means)]
            self._update_rest(means, sds)
        t0 = self.t0_us / 1e6 + self.win_index * BALANCE_WINDOW_S
        by_site = {(c["muscle"], c["side"]): c["channel"] for c in self.channel_map if c["channel"] < len(means)}
        affected = self.session.get("affected_side") if self.session else None
        if self.rest_mean is None or len(self.rest_mean) != len(means) or self.windows_seen < MIN_REST_WINDOWS:
            return out  # no rest level yet: activity cannot be told from rest
        rms = [math.sqrt(q / self.win_n) for q in self.win_sq]
        for muscle in sorted({m for m, _s in by_site}):
            if (muscle, "L") not in by_site or (muscle, "R") not in by_site:
                continue
            cl, cr = by_site[(muscle, "L")], by_site[(muscle, "R")]
            left, right, ai, ratio = balance(rms[cl], rms[cr], affected, self._rest_level(cl), self._rest_level(cr))
            if ai is None:
                continue
            out.append(R.BalanceRecord(
                device_id=self.device_id, session_id=session_id, time=utc(t0),
                time_end=utc(t0 + self.win_n * self.p.hop_s), window_kind="sliding", muscle=muscle,
                left=left, right=right, ai=ai, ratio=ratio, affected_side=affected, normalized=False))
        return out

    def _update_rest(self, means: list[float], sds: list[float]) -> None:
        self.windows_seen += 1
        if self.rest_mean is None or len(self.rest_mean) != len(means):
            self.rest_mean, self.rest_sd = list(means), list(sds)
        else:
            changed = False
            for i, (m, s) in enumerate(zip(means, sds)):
                if m < self.rest_mean[i]:
                    self.rest_mean[i], self.rest_sd[i] = m, s
                    changed = True
            if not changed and self.chain is not None and self.chain.detectors is not None:
                return
        if self.windows_seen >= MIN_REST_WINDOWS:
            self._arm_detectors()

    def _threshold(self, ch: int) -> float:
        """Activity threshold of a channel's envelope: rest mean + k * SD (SD at least 5 % of the mean)."""
        m, s = self.rest_mean[ch], self.rest_sd[ch]
        return m + ACTIVATION_K * max(s, 0.05 * m)

    def _rest_level(self, ch: int) -> float:
        """The channel's rest level (µV): the RMS of its quietest window's envelope."""
        return math.hypot(self.rest_mean[ch], self.rest_sd[ch])

    def _arm_detectors(self) -> None:
        if self.chain is None or self.rest_mean is None:
            return
        thr = [self._threshold(ch) for ch in range(len(self.rest_mean))]
        if self.chain.detectors is None:
            self.chain.set_baselines(thr)
        else:  # keep open activations; tighten thresholds only
            for det, t in zip(self.chain.detectors, thr):
                det.threshold = t

    # --- activations, quality -----------------------------------------------------

    def _site(self, channel: int) -> tuple[str, str]:
        for c in self.channel_map:
            if c["channel"] == channel:
                return c["muscle"], c["side"]
        return f"channel{channel}", "L" if channel % 2 == 0 else "R"

    def _remember_task(self, session_id: str, task: str, rep: int, start_us: int, stop_us: int | None) -> None:
        """Keep the last few task windows (a stop replaces its open start) for `_activation`."""
        kept = [w for w in self.recent_tasks if (w["task"], w["rep"], w["start_us"]) != (task, rep, start_us)]
        self.recent_tasks = (kept + [{"session_id": session_id, "task": task, "rep": rep, "start_us": start_us,
                                      "stop_us": stop_us}])[-8:]

    def _activation(self, act, session_id) -> R.ActivationRecord:
        muscle, side = self._site(act.channel)
        t0 = self.t0_us / 1e6
        onset_s = t0 + act.onset_s
        # the task repetition of this session whose window holds the onset, if its markers are already here
        spans = [TaskSpan(w["task"], w["rep"], w["start_us"] / 1e6,
                          w["stop_us"] / 1e6 if w["stop_us"] is not None else math.inf)
                 for w in self.recent_tasks if w.get("session_id") == (str(session_id) if session_id else None)]
        span = task_of(onset_s, spans)
        return R.ActivationRecord(
            device_id=self.device_id, session_id=session_id, channel=act.channel, muscle=muscle, side=side,
            onset=utc(onset_s), offset=utc(t0 + act.offset_s), peak_uv=float(act.peak),
            mean_uv=float(act.mean), area_uv_s=float(act.area),
            task=span.task if span else None, repetition=span.repetition if span else None,
            onset_latency_s=onset_latency_s(onset_s, span),
            target=(MUSCLES.get(muscle) == span.task) if span else None)

    def _quality(self, q, session_id) -> list[R.Record]:
        out: list[R.Record] = []
        t0 = self.t0_us / 1e6 + q.start_s
        for ch in range(len(q.rms_uv)):
            muscle, side = self._site(ch)
            base = self.rest_mean[ch] if self.rest_mean and ch < len(self.rest_mean) else None
            rms = float(q.rms_uv[ch])
            snr = 20 * math.log10(rms / base) if base and base > 0 and rms > 0 else None
            clip = None if q.clipping_fraction is None else float(q.clipping_fraction[ch])
            off = bool(q.electrode_off[ch])
            mains = float(q.mains_power_ratio[ch])
            self.signal_off = _set(self.signal_off, ch, off)
            contact_lost = ch < len(self.contact_lost) and self.contact_lost[ch]
            score = 1.0
            if off:
                score = 0.0
            else:
                score -= min(0.5, mains) + min(0.3, 10 * (clip or 0.0)) + min(0.2, float(q.lowfreq_power_ratio[ch]) / 2)
            out.append(R.QualityRecord(
                device_id=self.device_id, session_id=session_id, time=utc(t0), window_s=q.duration_s, channel=ch,
                muscle=muscle if not muscle.startswith("channel") else None,
                side=side if not muscle.startswith("channel") else None, rms_uv=rms, baseline_uv=base,
                snr_db=snr, mains_ratio=mains, clipping_frac=clip, flatline_frac=float(q.flat_fraction[ch]),
                contact_ok=not off, score=max(0.0, score)))
            for kind, cond, value in (("electrode_off", off or contact_lost, float(q.raw_sd_uv[ch])),
                                      ("clipping", (clip or 0.0) > 0.01, clip)):
                for ev in self.alerts.observe(kind, cond, t0 + q.duration_s, value=value, channel=ch):
                    out.append(self._alert(ev, session_id))
        return out

    # --- telemetry ---------------------------------------------------------------------

    def on_telemetry(self, t: Telemetry, received_at_us: int | None = None) -> list[R.Record]:
        """Telemetry -> its record and alerts; the device-clock rule first, as in `on_frame`."""
        if received_at_us is not None:
            self.check_clock(t.t_us, received_at_us)
        t_s = t.t_us / 1e6
        sid = t.session_id or self._session_uuid()
        out: list[R.Record] = [R.TelemetryRecord(
            device_id=self.device_id, time=utc(t_s), seq=t.seq, battery_pct=t.battery_pct,
            temperature_c=t.temperature_c, impedance_kohm=t.impedance_kohm, stim_current_ua=t.stim_current_ua,
            signal_strength_dbm=t.signal_strength_dbm, firmware_errors=list(t.firmware_errors) or None)]
        s = self.session
        if s is None or (t.session_id is not None and str(t.session_id) != s["session_id"]):
            return out  # alerts are about open sessions: a reading of none, or of another, is only stored
        if t.stim_current_ua is not None:
            over = t.stim_current_ua > self.limit_ua
            if self.session is not None:
                self.session["max_current"] = max(self.session.get("max_current") or 0.0, t.stim_current_ua)
            for ev in self.alerts.observe("over_current", over, t_s, value=t.stim_current_ua,
                                          detail=f"{t.stim_current_ua:.0f} µA, limit {self.limit_ua:.0f} µA"):
                out.append(self._alert(ev, sid, threshold=self.limit_ua))
        if t.battery_pct is not None:
            active = self.alerts.is_active("low_battery")
            low = t.battery_pct < (self.p.battery_clear_pct if active else self.p.battery_low_pct)
            for ev in self.alerts.observe("low_battery", low, t_s, value=t.battery_pct):
                out.append(self._alert(ev, sid, threshold=self.p.battery_low_pct))
        for ch, z in enumerate(t.impedance_kohm or []):
            lost = z > self.p.electrode_off_kohm
            self.contact_lost = _set(self.contact_lost, ch, lost)
            signal_off = ch < len(self.signal_off) and self.signal_off[ch]
            for ev in self.alerts.observe("electrode_off", lost or signal_off, t_s, value=z, channel=ch,
                                          detail=f"impedance {z:.0f} kΩ"):
                out.append(self._alert(ev, sid, threshold=self.p.electrode_off_kohm))
            bad = z > self.p.impedance_max_kohm and not lost
            for ev in self.alerts.observe("impedance_out_of_range", bad, t_s, value=z, channel=ch):
                out.append(self._alert(ev, sid, threshold=self.p.impedance_max_kohm))
        return out

    # --- session events ------------------------------------------------------------------

    def on_event(self, ev, received_at_us: int | None = None) -> list[R.Record]:
        """A session event -> summaries, task windows, alerts; the device-clock rule first."""
        if received_at_us is not None:
            self.check_clock(ev.t_us, received_at_us)
        t_s = ev.t_us / 1e6
        out: list[R.Record] = []
        if isinstance(ev, SessionStart):
            if self.session is not None and self.session["session_id"] != str(ev.session_id):
                if self.session.get("ending_us") is not None:  # ended, its last frames still to come
                    out += self._finish_closing()
                    out += self._clear_session_alerts(self.session["ending_us"] / 1e6, self._session_uuid())
                    self.closing, self.session, self.open_task = self.session, None, None
                else:
                    out += self._close_session(t_s, "ended")
            new = self.session is None or self.session["session_id"] != str(ev.session_id)
            if new:
                self.session = {
                    "session_id": str(ev.session_id), "therapy_type": ev.therapy_type, "started_us": ev.t_us,
                    "last_us": ev.t_us, "frames": self.early_frames.pop(str(ev.session_id), 0), "missing0": self.seq.n_missing, "dups0": self.seq.n_duplicates,
                    "alerts": 0, "max_current": None, "discomfort": None, "skin_reaction": None, "tasks": {},
                    "affected_side": _side_or_none(getattr(ev, "affected_side", None)),
                    # when the session was opened, on the clock of `on_tick`'s liveness (receive time)
                    "opened_s": (received_at_us if received_at_us is not None else ev.t_us) / 1e6,
                }
            self.channel_map = [{"channel": c.channel, "muscle": c.muscle, "side": c.side.value
                                 if hasattr(c.side, "value") else str(c.side)} for c in ev.channel_map]
            self.limit_ua = ev.stimulation.current_limit_ua if ev.stimulation else self.p.current_limit_ua
            out.append(self._summary("open", t_s))
        elif isinstance(ev, SessionEnd):
            if self.session is not None and self.session["session_id"] == str(ev.session_id):
                if self.last_end_us is not None and self.last_end_us >= ev.t_us:
                    out += self._close_session(t_s, "ended")
                else:  # frames of the session's end are still on their way: close when they are in
                    self.session["ending_us"] = ev.t_us
        elif isinstance(ev, TaskMarker):
            if ev.type == "task_start":
                self.open_task = {"task": ev.task, "rep": ev.repetition, "start_us": ev.t_us,
                                  "session_id": str(ev.session_id)}
                self._remember_task(str(ev.session_id), ev.task, ev.repetition, ev.t_us, None)
            elif self.open_task and self.open_task["task"] == ev.task and self.open_task["rep"] == ev.repetition:
                out.append(R.TaskWindowRecord(
                    device_id=self.device_id, session_id=ev.session_id, task=ev.task, repetition=ev.repetition,
                    time=utc(self.open_task["start_us"] / 1e6), time_end=utc(t_s)))
                if self.session is not None:
                    self.session["tasks"][ev.task] = max(self.session["tasks"].get(ev.task, 0), ev.repetition)
                self._remember_task(str(ev.session_id), ev.task, ev.repetition, self.open_task["start_us"], ev.t_us)
                self.open_task = None
        elif isinstance(ev, PatientReport):
            if self.session is not None:
                self.session["discomfort"] = ev.discomfort
                self.session["skin_reaction"] = ev.skin_reaction
            bad = ev.discomfort >= 7 or ev.skin_reaction not in ("none",)
            if bad:
                for a in self.alerts.observe("discomfort", True, t_s, value=float(ev.discomfort),
                                             detail=f"discomfort {ev.discomfort}/10, skin: {ev.skin_reaction}"):
                    out.append(self._alert(a, ev.session_id))
        return out

    def _close_session(self, t_s: float, status: str) -> list[R.Record]:
        if self.session is None:
            return []
        out = self._clear_session_alerts(t_s, self._session_uuid())
        out.append(self._summary(status, t_s))
        self.session = None
        self.open_task = None
        return out

    def _clear_session_alerts(self, t_s: float, session_id) -> list[R.Record]:
        """A session's end clears every alert still active, dated at the end: each condition is
        observed again in the next session, so no alert stays open between sessions or is
        attached to a session it did not happen in (`processors.alerting`, alert semantics)."""
        out: list[R.Record] = []
        self.contact_lost, self.signal_off = [], []  # observed afresh in the next session
        for kind, channel in self.alerts.active():
            for a in self.alerts.force_clear(kind, t_s, channel):
                out.append(self._alert(a, session_id))
        return out

    def _finish_closing(self) -> list[R.Record]:
        """The final summary of the session waiting for its last frames."""
        c, self.closing = self.closing, None
        if c is None:
            return []
        return late_frames.clear_closing(self, c) + [self._summary("ended", c["ending_us"] / 1e6, c)]

    def _summary(self, status: str, t_s: float, s: dict[str, Any] | None = None) -> R.SessionSummary:
        s = s if s is not None else self.session
        assert s is not None
        end_s = t_s if status != "open" else None
        minutes = ((end_s if end_s is not None else s["last_us"] / 1e6) - s["started_us"] / 1e6) / 60.0
        return R.SessionSummary(
            session_id=uuid.UUID(s["session_id"]), device_id=self.device_id, therapy_type=s["therapy_type"],
            started_at=utc(s["started_us"] / 1e6), ended_at=None if end_s is None else utc(end_s), status=status,
            minutes=max(0.0, minutes), discomfort=s["discomfort"],
            skin_reaction=s["skin_reaction"], max_stim_current_ua=s["max_current"], frames=s["frames"],
            missing_frames=min(self.seq.n_missing - s["missing0"], INT8_MAX),
            duplicates=self.seq.n_duplicates - s["dups0"],
            alerts=s["alerts"], tasks=dict(s["tasks"]), revision=0 if status == "open" else 1,
            channel_map=list(self.channel_map), computed_at=utc(t_s))

    # --- time passing (wall clock) --------------------------------------------------------

    def on_tick(self, now_s: float, last_arrival_s: float | None) -> list[R.Record]:
        """Liveness: raise `device_silent`, and time out a session, when nothing arrives."""
        out: list[R.Record] = []
        if (self.session is None and self.closing is None) or last_arrival_s is None or self.last_end_us is None:
            return out
        # quiet since the last frame, or since the session opened (its first frame may not have come yet)
        quiet_s = now_s - max(last_arrival_s, (self.session or {}).get("opened_s") or 0.0)
        if quiet_s > self.p.silent_after_s:
            d = flush(self.seq)  # stop waiting for frames that will not come
            out += self._deliver(d, None)
            s = self.session
            if s is not None and s.get("ending_us") is None:  # silent during the session, not after it
                quiet_from_s = max(self.last_end_us, s["started_us"]) / 1e6
                for ev in self.alerts.observe("device_silent", True, quiet_from_s + self.p.silent_after_s,
                                              detail="no frames from the device"):
                    out.append(self._alert(ev))
            out += self._finish_closing()  # their last frames are lost
            if self.session is not None and self.session.get("ending_us") is not None:
                out += self._close_session(self.session["ending_us"] / 1e6, "ended")
        if self.session is not None and quiet_s > self.p.session_timeout_s:
            out += self._close_session(self.last_end_us / 1e6, "timed_out")
        return out

    def stream_stats(self, now_s: float) -> R.StreamStats | None:
        """Counters since the last call (None when nothing happened).

        Dated by the device time after the last frame processed, or by ``now_s`` (the tick's time,
        replayed identically) when the window processed no frame. Counts saturate at the int4
        columns' maximum (a seq jump of 2^62 is 2^62 missing frames).
        """
        if not any(self.stats.values()):
            return None
        t_s = self.last_end_us / 1e6 if self.last_end_us is not None and self.stats["frames"] else now_s
        counts = {k: v if k == "samples" else min(v, INT4_MAX) for k, v in self.stats.items()}
        rec = R.StreamStats(device_id=self.device_id, time=utc(t_s), window_s=now_s,
                            last_seq=(self.seq.next_seq - 1) if self.seq.next_seq is not None else None,
                            session_id=self._session_uuid(), **counts)
        self.stats = dict.fromkeys(self.stats, 0)
        return rec

    def _alert(self, ev: AlertEvent, session_id=None, threshold: float | None = None) -> R.AlertRecord:
        sid = session_id or self._session_uuid()
        late_frames.count_alert(self, sid, ev.state)
        if ev.state == "raised":
            self.alerts.mark(ev.kind, ev.channel, None if sid is None else str(sid))
        c = self.alerts.conds[self.alerts._key(ev.kind, ev.channel)]
        raised_at = utc(c.raised_at if c.raised_at is not None else ev.time_s)
        kind = ALERT_TYPE_OF.get(ev.kind, ev.kind)
        return R.AlertRecord(
            alert_id=R.alert_id(self.device_id, kind, raised_at, ev.channel), device_id=self.device_id,
            session_id=sid, alert_type=kind, severity=ev.severity, state=ev.state, time=utc(ev.time_s),
            raised_at=raised_at, channel=ev.channel, value=ev.value, threshold=threshold, message=ev.message)

    # --- state -----------------------------------------------------------------------------

    def to_state(self) -> bytes:
        """8-byte big-endian revision, then MessagePack: the revision can be read without decoding."""
        self.rev += 1
        return self.rev.to_bytes(8, "big") + _ENC.encode({
            "v": STATE_VERSION, "rev": self.rev, "device_id": self.device_id, "seq": self.seq.to_state(),
            "chain": None if self.chain is None else self.chain.to_state(), "t0_us": self.t0_us,
            "last_end_us": self.last_end_us, "alerts": self.alerts.to_state(), "session": self.session,
            "channel_map": self.channel_map, "limit_ua": self.limit_ua, "win_index": self.win_index,
            "win_sum": self.win_sum, "win_sq": self.win_sq, "win_n": self.win_n, "rest_mean": self.rest_mean,
            "rest_sd": self.rest_sd, "windows_seen": self.windows_seen, "stats": self.stats,
            "open_task": self.open_task, "recent_tasks": self.recent_tasks, "last_arrival_s": self.last_arrival_s,
            "signal_off": self.signal_off, "contact_lost": self.contact_lost, "prev_last_uv": self.prev_last_uv,
            "applied": self.applied, "early_frames": self.early_frames,
            "closing": self.closing, "mains_hz": self.mains_hz, "detect_mains": self.detect_mains,
            "mains_session": self.mains_session,
            "mains_det": None if self.mains_det is None else self.mains_det.to_state(),
            "mains_meter": None if self.mains_meter is None else self.mains_meter.to_state(),
        })

    @classmethod
    def from_state(cls, data: bytes, params: WorkerParams) -> "DeviceProcessor":
        d = msgspec.msgpack.decode(data[8:])
        if d.get("v") not in (3, STATE_VERSION):  # 3: before sequence epochs (read by SequenceState)
            raise ValueError(f"unsupported device state version {d.get('v')}")
        p = cls(d["device_id"], params)
        p.rev = d["rev"]
        p.seq = SequenceState.from_state(d["seq"])
        try:
            p.chain = None if d["chain"] is None else MultiChannelChain.from_state(d["chain"])
        except (ValueError, KeyError, TypeError):
            p.chain = None  # state of another DSP version: restart the filters (a one-window transient)
        p.t0_us, p.last_end_us = d["t0_us"], d["last_end_us"]
        p.alerts = AlertTracker.from_state(d["alerts"])
        p.session, p.channel_map, p.limit_ua = d["session"], d["channel_map"], d["limit_ua"]
        p.win_index, p.win_sum, p.win_sq, p.win_n = d["win_index"], d["win_sum"], d["win_sq"], d["win_n"]
        p.rest_mean, p.rest_sd, p.windows_seen = d["rest_mean"], d["rest_sd"], d["windows_seen"]
        p.stats = {**p.stats, **{k: v for k, v in d["stats"].items() if k in p.stats}}
        p.open_task, p.last_arrival_s = d["open_task"], d["last_arrival_s"]
        p.recent_tasks = d.get("recent_tasks", [])
        p.signal_off, p.contact_lost, p.prev_last_uv = d["signal_off"], d["contact_lost"], d["prev_last_uv"]
        p.applied, p.early_frames, p.closing = d["applied"], d["early_frames"], d["closing"]
        p.mains_hz, p.detect_mains = d.get("mains_hz"), d.get("detect_mains", False)
        p.mains_session = d.get("mains_session")
        p.mains_det = None if d.get("mains_det") is None else LineMeter.from_state(d["mains_det"])
        p.mains_meter = None if d.get("mains_meter") is None else LineMeter.from_state(d["mains_meter"])
        return p


_ENC = msgspec.msgpack.Encoder()


def state_revision(data: bytes) -> int:
    """The revision of a stored state (it grows by one with every save)."""
    return int.from_bytes(data[:8], "big")


def _set(flags: list[bool], i: int, value: bool) -> list[bool]:
    if i >= len(flags):
        flags = flags + [False] * (i + 1 - len(flags))
    flags[i] = value
    return flags



def balance(left_rms_uv: float, right_rms_uv: float, affected_side: str | None, rest_left_uv: float = 0.0,
            rest_right_uv: float = 0.0) -> tuple[float, float, float | None, float | None]:
    """(left level, right level, AI, ratio affected/healthy) of one pair over a window, by the
    definitions of `processors.measures.balance`: each side's envelope RMS with its rest level
    removed in the power domain. AI and ratio are None when neither side is active (level above
    its rest level) or they are undefined; the ratio also when the affected side is unknown."""
    left = float(activity_level_uv(left_rms_uv * left_rms_uv, rest_left_uv))
    right = float(activity_level_uv(right_rms_uv * right_rms_uv, rest_right_uv))
    if not (math.isfinite(left) and math.isfinite(right)) or not pair_active(left, right, rest_left_uv,
                                                                              rest_right_uv):
        return left, right, None, None
    ai = optional(asymmetry_index(left, right))
    ratio = optional(affected_ratio(left, right, affected_side)) if affected_side in ("L", "R") else None
    return left, right, ai, ratio


def _side_or_none(v: Any) -> str | None:
    """The session's affected side as "L"/"R" (a Side or a string), None when not given."""
    v = getattr(v, "value", v)
    return v if v in ("L", "R") else None

"""Everything the pipeline knows about one device: the coordinator of its typed parts.

`DeviceProcessor` turns a device's raw records (frames, telemetry, session
events) into derived records (`processors.records`): it orders frames
(`processors.sequencing`), runs the DSP chain, and hands its outputs to the
parts, each with typed state: `session` (lifecycle, task windows), `balance`
(1 s balance, rest baseline), `activation`, `quality` (and mains), `telemetry`
(and stream statistics). No Kafka or database code: the Faust agent, the tests
and offline tools share it.

Deterministic: every output is a function of the inputs and the state, times
come from the device clock (the liveness check `on_tick` too keys its outputs
by device time), so a replay after a crash gives the same records and keys and
the idempotent sink stores each once. Per task window and session, balance and
synkinesis are computed in the database (SQL over `envelope` and
`task_window`): markers and frames come on different topics, unordered.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from ingest.wire import Frame, Telemetry, WireError, check_device_clock, decode_frame
from processors import records as R
from processors.alerting import AlertEvent, AlertTracker
from processors.dsp.chain import ChainConfig, MultiChannelChain
from processors.dsp.stim_pulses import remove_biphasic_pulses
from processors.sequencing import Delivery, SequenceState, accept, flush
from processors.dsp.rest_baseline import ClosedWindow, arm, detect_causal
from processors.worker.device.activation import activation_records
from processors.worker.device.balance import window_records
from processors.worker.device.common import WorkerParams, alert_record, utc
from processors.worker.device import late_frames
from processors.worker.device.events import SessionEvents
from processors.worker.device.quality import quality_records
from processors.worker.device.state import STATE_VERSION, Parts, decode_state, encode_state
from processors.worker.device.telemetry import telemetry_records
from processors.worker.fatigue import FatiguePart


@dataclass
class FrameBatchResult:
    """What a batch of frames gave: records, and per refused or late frame its index and why."""

    records: list[R.Record] = field(default_factory=list)
    late: list[tuple[int, str]] = field(default_factory=list)
    refused: list[tuple[int, WireError]] = field(default_factory=list)


class DeviceProcessor(SessionEvents):
    """One device's pipeline state; `on_*` methods return derived records."""

    def __init__(self, device_id: str, params: WorkerParams):
        self.device_id = device_id
        self.p = params
        self.rev = 0
        self.seq = SequenceState()
        self.chain: MultiChannelChain | None = None
        self.fatigue: FatiguePart | None = None  # spectral windows, on the chain's clock: made with it
        self.alerts = AlertTracker(device_id)
        self.parts = Parts()

    # the parts, by name (state lives in `self.parts`: one place to add a field)
    core = property(lambda self: self.parts.core)
    life = property(lambda self: self.parts.life)
    rest = property(lambda self: self.parts.rest)
    window = property(lambda self: self.parts.window)
    tasks = property(lambda self: self.parts.tasks)
    flags = property(lambda self: self.parts.quality)
    mains = property(lambda self: self.parts.mains)
    stats = property(lambda self: self.parts.stats)
    calib = property(lambda self: self.parts.calib)
    session = property(lambda self: self.parts.life.session)
    closing = property(lambda self: self.parts.life.closing)

    @property
    def applied(self) -> dict[str, int]:
        """Per input topic (a short code), the offset of the last record applied to this state."""
        return self.parts.core.applied

    @property
    def last_arrival_s(self) -> float | None:
        return self.parts.core.last_arrival_s

    @last_arrival_s.setter
    def last_arrival_s(self, v: float | None) -> None:
        self.parts.core.last_arrival_s = v

    @property
    def last_end_us(self) -> int | None:
        return self.parts.core.last_end_us

    @property
    def mains_hz(self) -> float | None:
        return self.parts.mains.hz

    # --- raw inputs -------------------------------------------------------------

    def on_frames(self, batch: Iterable[tuple[Frame, bytes, int | None]]) -> FrameBatchResult:
        """A batch of decoded frames, each with its wire bytes (held while reordering) and its
        gateway receive time (None: no device-clock rule). A frame the clock rule refuses
        (``clock_future``/``clock_past``) changes nothing but the counters."""
        res = FrameBatchResult()
        for i, (frame, wire, received_at_us) in enumerate(batch):
            if received_at_us is not None:
                try:
                    self.check_clock(frame.t_us, received_at_us)
                except WireError as exc:
                    res.refused.append((i, exc))
                    continue
            sid = str(frame.session_id) if frame.session_id else None
            d = accept(self.seq, frame.seq, wire, self.p.hold_frames, t_us=frame.t_us, session=sid,
                       resent=frame.resent)
            if d.duplicate:
                self.stats.duplicates += 1
            if d.late:
                self.stats.late += 1
                self.stats.dead_lettered += 1
                res.late.append((i, f"late frame seq {frame.seq}: its gap was already declared lost, or it is "
                                    "older than the device's sequence epoch"))
            res.records += self._deliver(d, frame)
        return res

    def on_frame(self, frame: Frame, wire: bytes, received_at_us: int | None = None
                 ) -> tuple[list[R.Record], list[str]]:
        """One frame (`on_frames` of one): (records, late reasons); a clock refusal raises WireError."""
        res = self.on_frames([(frame, wire, received_at_us)])
        if res.refused:
            raise res.refused[0][1]
        return res.records, [why for _i, why in res.late]

    def check_clock(self, t_us: int, received_at_us: int) -> None:
        """The device-clock rule (`ingest.wire.check_device_clock`); a refusal is counted, then raised."""
        try:
            check_device_clock(t_us, received_at_us, self.p.clock_max_future_s, self.p.clock_max_age_s)
        except WireError:
            self.stats.clock_refused += 1
            raise

    def _deliver(self, d: Delivery, arriving: Frame | None) -> list[R.Record]:
        out: list[R.Record] = []
        for first_missing, missing in d.gaps:
            self.stats.gaps += 1
            self.stats.missing_frames += missing
            out += self._observe("data_gap", True, (self.core.last_end_us or 0) / 1e6, value=float(missing),
                                 detail=f"{missing} frames from seq {first_missing} lost")
            self._reset_chain()  # no bridging across missing samples
        for i, (seq, wire) in enumerate(d.frames):
            frame = arriving if arriving is not None and seq == arriving.seq else decode_frame(wire)
            if i == d.restart_at:
                out += self._restart(frame, d.restart_reason)
            out += self._process(frame)
        return out

    def _restart(self, frame: Frame, reason: str) -> list[R.Record]:
        """The device's counter restarted at this frame: new filters, counted, an info alert."""
        self.stats.restarts += 1
        self._reset_chain()
        self.core.last_end_us = None  # the new epoch's time is not compared with the old one's
        t_s = frame.t_us / 1e6
        detail = f"counter restarted at seq {frame.seq} ({reason.replace('_', ' ')})"
        sid = frame.session_id or self.life.session_uuid()
        return (self._observe("sequence_restart", True, t_s, value=float(frame.seq), detail=detail, session_id=sid)
                + self._observe("sequence_restart", False, t_s, session_id=sid))

    def _reset_chain(self) -> None:
        self.chain = None
        self.fatigue = None
        self.mains.meter = None
        self.core.prev_last_uv = None
        self.core.t0_us = None
        self.window.reset()

    def _silence_in_session(self, frame: Frame) -> bool:
        """Whether the gap before `frame` lies inside the open session: a device between sessions
        (its previous frame before the session started, or the frame of another session) is not silent."""
        s, last = self.session, self.core.last_end_us
        if s is None or last is None or last < s.started_us:
            return False
        return frame.session_id is None or str(frame.session_id) == s.session_id

    def _process(self, frame: Frame) -> list[R.Record]:
        out: list[R.Record] = late_frames.finish_behind(self, frame)
        core = self.core
        t_start_s = frame.t_us / 1e6
        # silence detected from the data itself: the device clock jumped inside one open session
        if core.last_end_us is not None and frame.t_us - core.last_end_us > self.p.silent_after_s * 1e6:
            if self._silence_in_session(frame):
                out += self._observe("device_silent", True, core.last_end_us / 1e6 + self.p.silent_after_s,
                                     detail="no frames from the device")
            self._reset_chain()
        elif (core.last_end_us is not None
              and abs(frame.t_us - core.last_end_us) > 1e6 * 0.5 * frame.n_samples / frame.fs_hz):
            self._reset_chain()  # a discontinuity in the device clock: restart the filters
        for kind in ("device_silent", "data_gap"):
            out += self._observe(kind, False, t_start_s)
        x_uv = frame.microvolts()
        if frame.stim_active:  # pulses at 10-30 Hz have harmonics on the mains lines: remove them first
            x_uv, _n_pulses = remove_biphasic_pulses(x_uv, prev_uv=core.prev_last_uv)
        self.mains.detect(None if frame.session_id is None else str(frame.session_id), frame.fs_hz,
                          frame.n_channels, x_uv)
        mains_hz = self.mains.hz or self.p.mains_hz
        chain = self.chain
        if (chain is None or chain.cfg.fs_hz != frame.fs_hz
                or chain.cfg.n_channels != frame.n_channels or chain.cfg.mains_hz != mains_hz):
            scale = float(np.float32(frame.scale_uv))
            chain = self.chain = MultiChannelChain(ChainConfig(
                fs_hz=float(frame.fs_hz), n_channels=frame.n_channels, mains_hz=mains_hz,
                window_s=self.p.window_s, hop_s=self.p.hop_s, full_scale_uv=(-32768 * scale, 32767 * scale),
                stim_slope_uv=self.p.stim_slope_uv, keep_conditioned=True))
            self.fatigue = FatiguePart(float(frame.fs_hz), frame.n_channels, self.p.fatigue_min_s)
            core.t0_us = frame.t_us
            self.window.reset()
            if self.rest.mean is not None and len(self.rest.mean) == frame.n_channels:
                arm(chain, self.rest)
        # blank stimulation pulses only while the device says stimulation is on
        if chain.blanker is not None:
            chain.blanker.slope_uv = self.p.stim_slope_uv if frame.stim_active else math.inf
        core.prev_last_uv = x_uv[:, -1].tolist()
        res = chain.process(x_uv, detect=False)  # detected below, against the causal rest baseline
        if self.fatigue is not None and res.conditioned_uv is not None:
            self.fatigue.feed(res.conditioned_uv)
        core.last_end_us = frame.t_us + frame.duration_us
        self.stats.frames += 1
        self.stats.samples += frame.n_samples * frame.n_channels
        session_id = frame.session_id or self.life.session_uuid()
        out += self._count_frame(str(frame.session_id) if frame.session_id else None)
        t0_us = core.t0_us
        assert t0_us is not None
        env = res.envelope_uv
        if env.shape[1]:
            t_env0 = t0_us / 1e6 + float(res.envelope_times_s[0])
            rails = (frame.samples >= 32767) | (frame.samples <= -32768)
            clipped = sum(1 << int(ch) for ch in np.flatnonzero(rails.any(axis=1)) if ch < 31)
            out.append(R.EnvelopeFrame.from_array(
                env, device_id=self.device_id, session_id=session_id, seq=frame.seq, time=utc(t_env0),
                fs_hz=1.0 / self.p.hop_s, clipped=clipped, stim_blanked=res.blanked_samples > 0))
            self.calib.feed(str(session_id) if session_id else None, env, t0_us / 1e6 + res.envelope_times_s)
            acts, closed = detect_causal(chain, self.rest, self.window, env, res.envelope_times_s)
            out += self._balance(closed, session_id, t0_us)
        else:
            acts = []
        out += activation_records(acts, device_id=self.device_id, session_id=session_id,
                                  t0_us=t0_us, life=self.life, tasks=self.tasks, peak_pct_mvc=self._peak_pct_mvc,
                                  fatigue=self.fatigue)
        if self.fatigue is not None:
            self.fatigue.after_frame(chain.detectors)
        out += quality_records(res.quality, self.flags, self.rest, self.life, self._observe,
                                device_id=self.device_id, session_id=session_id, t0_us=t0_us)
        out += self.mains.noise(x_uv, fs_hz=frame.fs_hz, t_us=frame.t_us, mains_hz=mains_hz,
                                limit_uv=self.p.mains_alert_uv, alert=self._observe, session_id=session_id)
        return out

    def _balance(self, closed: list[ClosedWindow], session_id, t0_us: int) -> list[R.Record]:
        """Closed 1 s windows (the rest baseline already updated from them) -> balance records."""
        out: list[R.Record] = []
        affected = self.session.affected_side if self.session is not None else None
        for win in closed:
            out += window_records(win, self.rest, device_id=self.device_id, session_id=session_id,
                                  t0_us=t0_us, hop_s=self.p.hop_s, channel_map=self.life.channel_map,
                                  affected=affected, rest_uv=self.calib.rest_uv,
                                  reference_uv=lambda cl, cr: self.calib.reference_uv(cl, cr, affected))
        return out

    def _peak_pct_mvc(self, channel: int, peak_uv: float) -> float | None:
        affected = self.session.affected_side if self.session is not None else None
        return self.calib.peak_pct_mvc(channel, peak_uv, self.life.channel_map, affected)

    def _count_frame(self, sid: str | None) -> list[R.Record]:
        """Count a frame for its session; close a session whose end event waited for its last frames."""
        last = self.core.last_end_us
        assert last is not None
        due = self.life.count_frame(sid, last)
        if due == "finish_closing":
            return self._finish_closing()
        if due == "close":
            ending_us = self.session.ending_us
            return self._close_session(ending_us / 1e6, "ended")
        return []

    # --- telemetry ---------------------------------------------------------------------

    def on_telemetry(self, t: Telemetry, received_at_us: int | None = None) -> list[R.Record]:
        """Telemetry -> its record and alerts; the device-clock rule first, as in `on_frame`."""
        if received_at_us is not None:
            self.check_clock(t.t_us, received_at_us)
        limit = self.life.limit_ua if self.life.limit_ua is not None else self.p.current_limit_ua
        return telemetry_records(
            t, self.session, self.flags, limit, self.p, self._observe, device_id=self.device_id,
            session_id=t.session_id or self.life.session_uuid(),
            low_battery_active=self.alerts.is_active("low_battery"))

    # --- time passing (wall clock) --------------------------------------------------------

    def on_tick(self, now_s: float, last_arrival_s: float | None) -> list[R.Record]:
        """Liveness: raise `device_silent`, and time out a session, when nothing arrives."""
        out: list[R.Record] = []
        last = self.core.last_end_us
        if (self.session is None and self.closing is None) or last_arrival_s is None or last is None:
            return out
        # quiet since the last frame, or since the session opened (its first frame may not have come yet)
        quiet_s = now_s - max(last_arrival_s, self.session.opened_s if self.session is not None else 0.0)
        if quiet_s > self.p.silent_after_s:
            out += self._deliver(flush(self.seq), None)  # stop waiting for frames that will not come
            s = self.session
            if s is not None and s.ending_us is None:  # silent during the session, not after it
                quiet_from_s = max(self.core.last_end_us, s.started_us) / 1e6
                out += self._observe("device_silent", True, quiet_from_s + self.p.silent_after_s,
                                     detail="no frames from the device")
            out += self._finish_closing()  # their last frames are lost
            if self.session is not None and self.session.ending_us is not None:
                out += self._close_session(self.session.ending_us / 1e6, "ended")
        if self.session is not None and quiet_s > self.p.session_timeout_s:
            out += self._close_session(self.core.last_end_us / 1e6, "timed_out")
        return out

    def stream_stats(self, now_s: float) -> R.StreamStats | None:
        """Counters since the last call (None when nothing happened).

        Dated by the device time after the last frame processed, or by ``now_s`` (the tick's time,
        replayed identically) when the window processed no frame. Counts saturate at the int4
        columns' maximum (a seq jump of 2^62 is 2^62 missing frames).
        """
        if not self.stats.any():
            return None
        last = self.core.last_end_us
        t_s = last / 1e6 if last is not None and self.stats.frames else now_s
        return R.StreamStats(device_id=self.device_id, time=utc(t_s), window_s=now_s,
                             last_seq=(self.seq.next_seq - 1) if self.seq.next_seq is not None else None,
                             session_id=self.life.session_uuid(), **self.stats.take())

    # --- alerts ----------------------------------------------------------------------------

    def _observe(self, kind: str, condition: bool, t_s: float, *, session_id=None, threshold: float | None = None,
                 value: float | None = None, channel: int | None = None, detail: str = "") -> list[R.Record]:
        """One observation of an alert condition -> the records of the transitions it causes."""
        return [self._alert(ev, session_id, threshold)
                for ev in self.alerts.observe(kind, condition, t_s, value=value, channel=channel, detail=detail)]

    def _alert(self, ev: AlertEvent, session_id=None, threshold: float | None = None) -> R.AlertRecord:
        sid = session_id or self.life.session_uuid()
        late_frames.count_alert(self, sid, ev.state)
        if ev.state == "raised":
            self.alerts.mark(ev.kind, ev.channel, None if sid is None else str(sid))
        return alert_record(self.device_id, self.alerts, ev, sid, threshold)

    # --- state -----------------------------------------------------------------------------

    def to_state(self) -> bytes:
        """8-byte big-endian revision, then MessagePack (`state`): the revision is read without decoding."""
        self.rev += 1
        return encode_state(self.rev, self.device_id, self.seq, self.chain, self.alerts, self.parts, self.fatigue)

    @classmethod
    def from_state(cls, data: bytes, params: WorkerParams) -> "DeviceProcessor":
        snap = decode_state(data)
        p = cls(snap.device_id, params)
        p.rev, p.parts = snap.rev, snap.parts
        p.seq = SequenceState.from_state(snap.seq)
        try:
            p.chain = None if snap.chain is None else MultiChannelChain.from_state(snap.chain)
        except (ValueError, KeyError, TypeError):
            p.chain = None  # state of another DSP version: restart the filters (a one-window transient)
        p.fatigue = None if snap.fatigue is None else FatiguePart.from_state(snap.fatigue, params.fatigue_min_s)
        if p.chain is None:
            p.fatigue = None
        elif p.fatigue is None:  # a state saved before fatigue: spectral windows from now on
            p.chain.cfg = dataclasses.replace(p.chain.cfg, keep_conditioned=True)
            p.fatigue = FatiguePart(p.chain.cfg.fs_hz, p.chain.cfg.n_channels, params.fatigue_min_s,
                                    start_s=p.chain.n_samples / p.chain.cfg.fs_hz)
        p.alerts = AlertTracker.from_state(snap.alerts)
        return p


def state_revision(data: bytes) -> int:
    """The revision of a stored state (it grows by one with every save)."""
    return int.from_bytes(data[:8], "big")


__all__ = ["DeviceProcessor", "FrameBatchResult", "STATE_VERSION", "state_revision", "WorkerParams"]

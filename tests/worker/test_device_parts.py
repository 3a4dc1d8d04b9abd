"""Each typed part of the per-device processing on its own (pure: no Kafka, no database)."""

from __future__ import annotations

import math
import uuid

import msgspec
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest import wire
from processors import records as R
from processors.alerting import AlertTracker
from processors.dsp.activation import Activation
from processors.dsp.chain import QualityWindow
from processors.worker.device.activation import TASKS_KEPT, TaskMemory, TaskWindow, activation_records
from processors.worker.device.balance import (MIN_REST_WINDOWS, RestBaseline, SlidingBalance, pairs,
                                              window_records)
from processors.worker.device.calibration import Calibration
from processors.worker.device.common import WorkerParams
from processors.worker.device.quality import MainsState, QualityFlags, quality_records
from processors.worker.device.session import MAX_EARLY_SESSIONS, ChannelSite, Lifecycle
from processors.worker.device.telemetry import StreamCounters, telemetry_records
from tests.worker import script as S

SID = str(S.SESSION)
SITES = [ChannelSite(0, "zygomaticus", "L"), ChannelSite(1, "zygomaticus", "R"), ChannelSite(2, "frontalis", "L")]


class Hook:
    """An `AlertHook` over a real tracker that records every observation."""

    def __init__(self) -> None:
        self.tracker = AlertTracker(S.DEVICE)
        self.seen: list[tuple[str, bool, int | None]] = []

    def __call__(self, kind, condition, t_s, *, session_id=None, threshold=None, value=None, channel=None,
                 detail=""):
        self.seen.append((kind, condition, channel))
        return [(ev.kind, ev.state, ev.channel) for ev in
                self.tracker.observe(kind, condition, t_s, value=value, channel=channel, detail=detail)]


# --- session ---------------------------------------------------------------------------------


def opened(life: Lifecycle, t_s: float = 0.0) -> Lifecycle:
    life.open(S.event(t_s, type="session_start", therapy_type="biofeedback_exercise", fs_hz=S.FS_HZ,
                      channel_map=S.CHANNEL_MAP), opened_s=t_s, n_missing=3, n_duplicates=1)
    return life


def test_frames_before_the_start_count_for_their_session_and_few_are_remembered() -> None:
    life = Lifecycle()
    for k in range(5):
        assert life.count_frame(SID, 1000 + k) is None
    for other in range(MAX_EARLY_SESSIONS + 3):
        life.count_frame(str(uuid.UUID(int=other)), 1)
    assert len(life.early_frames) == MAX_EARLY_SESSIONS and SID not in life.early_frames  # the oldest forgotten
    life = Lifecycle(early_frames={SID: 5})
    opened(life)
    assert life.session is not None and life.session.frames == 5 and not life.early_frames
    assert [c.side for c in life.channel_map] == ["L", "R", "L", "R"] and life.limit_ua is None
    assert life.site(1) == ("zygomaticus", "R") and life.site(7) == ("channel7", "R")


def test_a_session_closes_when_the_frame_at_its_end_is_in() -> None:
    life = opened(Lifecycle())
    s = life.session
    s.ending_us = S.T0_US + 2_000_000
    assert life.count_frame(SID, S.T0_US + 1_950_000) is None
    assert life.count_frame(None, S.T0_US + 2_000_000) == "close"  # frames without a session id count too
    life.closing, life.session = s, None
    assert life.count_frame(SID, S.T0_US + 2_100_000) == "finish_closing" and s.frames == 3
    summary = life.summary(S.DEVICE, "ended", (S.T0_US + 2_000_000) / 1e6, n_missing=10, n_duplicates=1, s=s)
    assert (summary.frames, summary.missing_frames, summary.duplicates, summary.revision) == (3, 7, 0, 1)
    assert abs(summary.minutes - 2.0 / 60.0) < 1e-9 and summary.channel_map[0] == S.CHANNEL_MAP[0]


# --- balance ---------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 60), min_size=1, max_size=12))
def test_window_sums_do_not_depend_on_how_the_envelope_is_cut(cuts: list[int]) -> None:
    rng = np.random.default_rng(len(cuts))
    n = sum(cuts)
    env = rng.gamma(2.0, 10.0, size=(3, n))
    times = np.arange(n) * 0.025
    whole, parts = SlidingBalance(), SlidingBalance()
    a = whole.feed(env, times)
    b, i = [], 0
    for c in cuts:
        b += parts.feed(env[:, i:i + c], times[i:i + c])
        i += c
    assert a == b and msgspec.structs.asdict(whole) == msgspec.structs.asdict(parts)
    assert [w.index for w in a] == list(range(int(times[-1] // 1.0)))
    assert all(w.n == 40 for w in a)  # full 1 s windows of 25 ms hops


def test_the_rest_baseline_only_goes_down_and_arms_after_three_windows() -> None:
    rest = RestBaseline()
    assert rest.update([10.0, 20.0], [1.0, 2.0]) and not rest.ready(2)
    assert not rest.update([12.0, 25.0], [0.5, 0.5])  # louder: kept
    assert rest.update([12.0, 15.0], [3.0, 3.0]) and rest.mean == [10.0, 15.0] and rest.sd == [1.0, 3.0]
    assert rest.windows_seen == MIN_REST_WINDOWS and rest.ready(2) and not rest.ready(3)
    assert rest.threshold(0) == 10.0 + 3 * 1.0 and rest.threshold(1) == 15.0 + 3 * 3.0
    assert math.isclose(rest.level(0), math.hypot(10.0, 1.0)) and rest.base(5) is None


def test_window_records_only_for_active_pairs_with_both_sides_mapped() -> None:
    rest = RestBaseline([5.0, 5.0, 5.0], [0.0, 0.0, 0.0], MIN_REST_WINDOWS)
    assert pairs(SITES, 3) == [("zygomaticus", 0, 1)] and pairs(SITES, 1) == []
    loud = SlidingBalance().feed(np.vstack([np.full(41, 30.0), np.full(41, 10.0), np.full(41, 50.0)]),
                                 np.arange(41) * 0.025)[0]
    quiet = SlidingBalance().feed(np.full((3, 41), 5.0), np.arange(41) * 0.025)[0]
    kw = dict(device_id=S.DEVICE, session_id=S.SESSION, t0_us=S.T0_US, hop_s=0.025, channel_map=SITES)
    (rec,) = window_records(loud, rest, affected="R", **kw)
    left, right = math.sqrt(30**2 - 25), math.sqrt(10**2 - 25)
    assert rec.muscle == "zygomaticus" and math.isclose(rec.left, left) and math.isclose(rec.right, right)
    assert math.isclose(rec.ai, (left - right) / (left + right)) and math.isclose(rec.ratio, right / left)
    assert rec.time.timestamp() == S.T0_US / 1e6 and rec.time_end.timestamp() == S.T0_US / 1e6 + 1.0
    assert window_records(quiet, rest, affected="R", **kw) == []  # at rest: no AI
    # the session's rest level and a %MVC reference: levels in %MVC, the same AI
    (pct,) = window_records(loud, rest, affected="R", rest_uv=lambda ch: 0.0, reference_uv=lambda cl, cr: 60.0,
                            **kw)
    assert pct.normalized and not rec.normalized
    assert math.isclose(pct.left, 50.0) and math.isclose(pct.right, 100 * 10 / 60) and math.isclose(pct.ai, 0.5)
    assert window_records(loud, RestBaseline([5.0] * 3, [0.0] * 3, 2), affected=None, **kw) == []  # not learned


# --- activation ------------------------------------------------------------------------------


def test_task_memory_keeps_the_last_windows_and_a_stop_replaces_its_start() -> None:
    mem = TaskMemory()
    mem.remember(TaskWindow(SID, "smile", 1, 100, None))
    mem.remember(TaskWindow(SID, "smile", 1, 100, 200))
    assert mem.recent == [TaskWindow(SID, "smile", 1, 100, 200)]
    for k in range(2, 20):
        mem.remember(TaskWindow(SID, "smile", k, 100 * k, None))
    assert len(mem.recent) == TASKS_KEPT and mem.recent[-1].rep == 19
    assert mem.spans(SID)[-1].stop_s == math.inf and mem.spans("another") == []


def test_activations_are_attributed_to_the_task_window_holding_their_onset() -> None:
    life = opened(Lifecycle())
    mem = TaskMemory([TaskWindow(SID, "smile", 2, S.T0_US + 1_000_000, S.T0_US + 3_000_000),
                      TaskWindow(SID, "brow_raise", 1, S.T0_US + 4_000_000, None)])
    acts = [Activation(0, 1.3, 2.0, 90.0, 40.0, 28.0, 0, 1), Activation(2, 3.5, 3.9, 9.0, 4.0, 1.6, 0, 1),
            Activation(2, 4.5, 5.0, 9.0, 4.0, 2.0, 0, 1)]
    smile, none, brow = activation_records(acts, device_id=S.DEVICE, session_id=S.SESSION, t0_us=S.T0_US,
                                           life=life, tasks=mem)
    assert (smile.muscle, smile.side, smile.task, smile.repetition, smile.target) == (
        "zygomaticus", "L", "smile", 2, True)
    assert abs(smile.onset_latency_s - 0.3) < 1e-6 and abs(smile.offset.timestamp() - S.T0_US / 1e6 - 2.0) < 1e-6
    assert none.task is None and none.onset_latency_s is None and none.target is None
    assert (brow.muscle, brow.task, brow.target) == ("frontalis", "brow_raise", True)


# --- quality ---------------------------------------------------------------------------------


def qwindow(off: bool, clip: float) -> QualityWindow:
    one = np.ones(2)
    return QualityWindow(index=0, start_s=1.0, duration_s=1.0, rms_uv=one * 20.0, raw_sd_uv=one * 21.0,
                         mains_power_ratio=one * 0.1, lowfreq_power_ratio=one * 0.0, flat_fraction=one * 0.0,
                         clipping_fraction=one * clip, electrode_off=np.array([off, False]))


def test_quality_records_score_the_signal_and_observe_electrode_and_clipping() -> None:
    life, flags, hook = opened(Lifecycle()), QualityFlags(contact_lost=[False, True]), Hook()
    rest = RestBaseline([2.0, 2.0], [0.1, 0.1], 3)
    kw = dict(device_id=S.DEVICE, session_id=S.SESSION, t0_us=S.T0_US)
    recs = quality_records([qwindow(True, 0.02)], flags, rest, life, hook, **kw)
    q = [r for r in recs if isinstance(r, R.QualityRecord)]
    assert [r.score for r in q] == [0.0, 1.0 - 0.1 - 0.2] and math.isclose(q[1].snr_db, 20.0)
    assert flags.signal_off == [True, False] and q[0].muscle == "zygomaticus" and not q[0].contact_ok
    # electrode off: channel 0 by its signal, channel 1 by its impedance; clipping above 1 % on both
    assert [(k, c, ch) for k, c, ch in hook.seen] == [("electrode_off", True, 0), ("clipping", True, 0),
                                                      ("electrode_off", True, 1), ("clipping", True, 1)]
    flags.clear()
    assert flags.signal(0) and flags.contact(1)


def test_mains_is_detected_from_a_sessions_first_two_seconds_and_saved_as_state() -> None:
    fs, n = 1000, 2000
    t = np.arange(n) / fs
    hum = np.random.default_rng(1).normal(0, 5, size=(2, n)) + 40 * np.sin(2 * np.pi * 60 * t)
    m = MainsState()
    m.detect(SID, fs, 2, hum[:, :1200])
    saved = msgspec.convert(msgspec.msgpack.decode(msgspec.msgpack.encode(m.saved())), MainsState)
    assert saved.detecting and saved.det.n_seen == m.det.n_seen
    saved.detect(SID, fs, 2, hum[:, 1200:])
    assert saved.hz == 60.0 and not saved.detecting and saved.det is None
    saved.detect(SID, fs, 2, hum)  # the same session: decided once
    assert not saved.detecting
    saved.detect(str(uuid.UUID(int=1)), fs, 2, hum + 40 * np.sin(2 * np.pi * 50 * t) - 40 * np.sin(2 * np.pi * 60 * t))
    assert saved.hz == 50.0  # the next session: detected anew
    hook = Hook()
    out = saved.noise(hum, fs_hz=fs, t_us=S.T0_US, mains_hz=50.0, limit_uv=20.0, alert=hook, session_id=None)
    assert out == [] and [k for k, _c, _ch in hook.seen] == ["mains_noise"] * 4  # 60 Hz: not in the 50 Hz lines


# --- telemetry -------------------------------------------------------------------------------


def test_stream_counters_saturate_and_reset() -> None:
    c = StreamCounters(frames=3, samples=2**40, missing_frames=2**40)
    assert c.any()
    taken = c.take()
    assert taken["samples"] == 2**40 and taken["missing_frames"] == 2**31 - 1 and taken["frames"] == 3
    assert not c.any() and c == StreamCounters()


def test_telemetry_alerts_only_for_the_open_session() -> None:
    p, flags, hook = WorkerParams(), QualityFlags(signal_off=[False, True]), Hook()
    t = wire.telemetry_from_json({"seq": 1, "t_us": S.T0_US, "session_id": SID, "stim_current_ua": 700.0,
                                  "battery_pct": 17.0, "impedance_kohm": [2000.0, 10.0, 60.0]}, S.DEVICE)
    kw = dict(device_id=S.DEVICE, session_id=S.SESSION, low_battery_active=False)
    assert [type(r) for r in telemetry_records(t, None, flags, 600.0, p, hook, **kw)] == [R.TelemetryRecord]
    assert hook.seen == []
    life = opened(Lifecycle())
    telemetry_records(t, life.session, flags, 600.0, p, hook, **kw)
    assert life.session.max_current == 700.0 and flags.contact_lost == [True, False, False]
    assert hook.seen == [("over_current", True, None), ("low_battery", False, None),
                         ("electrode_off", True, 0), ("impedance_out_of_range", False, 0),
                         ("electrode_off", True, 1), ("impedance_out_of_range", False, 1),
                         ("electrode_off", False, 2), ("impedance_out_of_range", True, 2)]
    hook.seen.clear()  # battery at 17 %: below the clearing level once the alert is raised
    telemetry_records(t, life.session, flags, 600.0, p, hook, **{**kw, "low_battery_active": True})
    assert ("low_battery", True, None) in hook.seen


# --- calibration (live rest level and %MVC reference) -----------------------------------------


def test_calibration_pools_the_sessions_rest_and_mvc_windows_once_they_are_done() -> None:
    t0 = S.T0_US / 1e6
    times = t0 + np.arange(400) * 0.025  # 10 s of envelope at 40 Hz
    env = np.empty((4, 400))
    env[0], env[1], env[2], env[3] = 3.0, 4.0, 3.0, 4.0  # rest levels 3 and 4 µV
    mvc = (times >= t0 + 3.0) & (times < t0 + 6.0)
    env[0, mvc], env[1, mvc] = 5.0, 20.0  # levels sqrt(25 - 9) = 4 and sqrt(400 - 16)
    windows = [TaskWindow(SID, "rest", 1, S.T0_US + 500_000, S.T0_US + 2_500_000),
               TaskWindow(SID, "mvc_calibration", 1, S.T0_US + 3_000_000, None),
               TaskWindow("another", "rest", 1, S.T0_US, S.T0_US + 9_000_000)]
    cal = Calibration()
    cal.feed(SID, env[:, :200], times[:200], windows)  # up to 5 s: the calibration still open
    assert cal.rest.done and cal.rest.n == 80 and math.isclose(cal.rest_uv(1), 4.0)
    assert not cal.mvc.done and cal.reference_uv(0, 1, None) is None
    windows[1] = TaskWindow(SID, "mvc_calibration", 1, S.T0_US + 3_000_000, S.T0_US + 6_000_000)
    cal.feed(SID, env[:, 200:], times[200:], windows)
    assert cal.mvc.done and cal.mvc.n == 120
    strong = math.sqrt(400 - 16)
    assert math.isclose(cal.reference_uv(0, 1, None), strong)  # unknown affected side: the stronger
    assert math.isclose(cal.reference_uv(0, 1, "R"), 4.0)  # the healthy side's, even if weaker
    assert cal.reference_uv(2, 3, None) is None  # no activity in the calibration: no reference
    sites = [ChannelSite(0, "zygomaticus", "L"), ChannelSite(1, "zygomaticus", "R")]
    assert math.isclose(cal.peak_pct_mvc(0, 5.0, sites, None), 100 * 4.0 / strong)
    assert cal.peak_pct_mvc(2, 5.0, sites, None) is None  # a channel of no pair
    saved = msgspec.convert(msgspec.msgpack.decode(msgspec.msgpack.encode(cal)), Calibration)
    assert saved == cal
    cal.feed(str(uuid.UUID(int=9)), env[:, :10], times[:10], windows)  # the next session: afresh
    assert cal.rest.n == 0 and cal.rest_uv(0) is None and cal.reference_uv(0, 1, None) is None

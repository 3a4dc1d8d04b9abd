"""DeviceProcessor against hostile sequence numbers and device clocks (pure: no Kafka, no database)."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest

from ingest import wire
from ingest.wire import Frame, WireError
from processors import records as R
from processors.worker.device import INT4_MAX, DeviceProcessor, WorkerParams

DEVICE = "dev-epochs"
FS_HZ = 2000
N = 100  # samples per frame: 50 ms
NOW_US = wire.now_us()
T0 = NOW_US - 3600 * 1_000_000  # an hour ago: inside the clock rule
P = WorkerParams()
SESSION_A, SESSION_B = uuid.UUID(int=0xA), uuid.UUID(int=0xB)
RNG = np.random.default_rng(5)
NOISE = RNG.integers(-200, 200, size=(2, N * 40), dtype=np.int16)


def frame(seq: int, t_us: int, session: uuid.UUID | None = None, k: int = 0, resent: bool = False) -> Frame:
    j = (k % 40) * N
    return Frame(device_id=DEVICE, seq=seq, t_us=t_us, fs_hz=FS_HZ, scale_uv=0.1,
                 samples=np.ascontiguousarray(NOISE[:, j:j + N]), session_id=session, resent=resent)


def feed(dp: DeviceProcessor, f: Frame, received_at_us: int | None = NOW_US) -> tuple[list[R.Record], list[str]]:
    return dp.on_frame(f, wire.encode_frame(f), received_at_us)


def start(session: uuid.UUID, t_us: int, seq: int = 0):
    return wire.event_from_json({"type": "session_start", "seq": seq, "t_us": t_us, "session_id": str(session),
                                 "therapy_type": "biofeedback_exercise", "fs_hz": FS_HZ,
                                 "channel_map": [{"channel": 0, "muscle": "zygomaticus", "side": "L"},
                                                 {"channel": 1, "muscle": "zygomaticus", "side": "R"}]}, DEVICE)


def end(session: uuid.UUID, t_us: int, seq: int = 1):
    return wire.event_from_json({"type": "session_end", "seq": seq, "t_us": t_us, "session_id": str(session)},
                                DEVICE)


def envelopes(recs: list[R.Record]) -> list[int]:
    return [r.seq for r in recs if isinstance(r, R.EnvelopeFrame)]


def test_the_largest_seq_and_a_billion_frame_jump_keep_the_state_small_and_fast() -> None:
    dp = DeviceProcessor(DEVICE, P)
    t = T0
    out: list[R.Record] = []
    began = time.perf_counter()
    for k, seq in enumerate(list(range(10)) + [10**9 + i for i in range(5)] + [wire.SEQ_MAX - 4 + i for i in range(5)]):
        recs, late = feed(dp, frame(seq, t, k=k))
        out += recs
        assert not late
        t += 50_000
    out += dp.on_tick(time.time() + 60, dp.last_end_us / 1e6)  # the device went quiet: flush the hold
    elapsed_s = time.perf_counter() - began
    assert elapsed_s < 2.0  # nothing proportional to the seq values (the set of misses took minutes and GBs)
    assert len(dp.to_state()) < 64_000
    assert dp.seq.next_seq == wire.SEQ_MAX + 1 and dp.seq.n_in_order + dp.seq.n_reordered == 20
    assert dp.seq.n_missing == wire.SEQ_MAX + 1 - 20
    # every frame processed; the first after each filter reset (start, two gaps) only fills the window
    assert len(envelopes(out)) == 20 - 3
    gaps = [r for r in out if isinstance(r, R.AlertRecord) and r.alert_type == "data_gap"]
    assert gaps and gaps[0].state == "raised"
    stats = dp.stream_stats(time.time())
    assert stats is not None and stats.missing_frames == INT4_MAX and stats.last_seq == wire.SEQ_MAX
    assert stats.frames == 20 and stats.gaps == 2
    # a frame far behind the top of the range, flagged as a resend: a late or duplicate frame, never a hold
    recs, late = feed(dp, frame(10**9 + 2, T0 + 12 * 50_000, k=12, resent=True))
    assert not envelopes(recs) and not late and dp.seq.n_duplicates == 1 and dp.seq.n_restarts == 0
    assert DeviceProcessor.from_state(dp.to_state(), P).seq.to_state() == dp.seq.to_state()


def test_a_counter_restart_across_sessions_is_stored_counted_and_summarised() -> None:
    dp = DeviceProcessor(DEVICE, P)
    out: list[R.Record] = list(dp.on_event(start(SESSION_A, T0), NOW_US))
    for q in range(120):
        out += feed(dp, frame(q, T0 + q * 50_000, SESSION_A, k=q))[0]
    out += dp.on_event(end(SESSION_A, T0 + 120 * 50_000), NOW_US)
    t1 = T0 + 600 * 1_000_000
    out += dp.on_event(start(SESSION_B, t1, seq=2), NOW_US)
    before = len(envelopes(out))
    for q in range(120):  # the device rebooted: its counter starts at 0 again
        recs, late = feed(dp, frame(q, t1 + q * 50_000, SESSION_B, k=q))
        assert not late
        out += recs
    out += dp.on_event(end(SESSION_B, t1 + 120 * 50_000, seq=3), NOW_US)
    # every frame of the new epoch processed (the first one, after the filter reset, fills the window)
    assert envelopes(out)[before:] == list(range(1, 120))
    assert dp.seq.n_duplicates == 0 and dp.seq.n_restarts == 1
    summaries = {(r.session_id, r.status): r for r in out if isinstance(r, R.SessionSummary)}
    assert summaries[(SESSION_A, "ended")].frames == 120
    b = summaries[(SESSION_B, "ended")]
    assert (b.frames, b.missing_frames, b.duplicates) == (120, 0, 0)
    restart = [r for r in out if isinstance(r, R.AlertRecord) and r.alert_type == "sequence_restart"]
    assert [(r.state, r.severity, r.session_id) for r in restart] == [("raised", "info", SESSION_B),
                                                                     ("cleared", "info", SESSION_B)]
    assert "restarted at seq 0" in restart[0].message and restart[0].alert_type in R.ALERT_TYPES
    stats = dp.stream_stats(time.time())
    assert stats is not None and stats.restarts == 1 and stats.frames == 240 and stats.duplicates == 0
    # a late copy of the old session's last frame stays late: no second restart, nothing stored
    recs, late = feed(dp, frame(119, T0 + 119 * 50_000, SESSION_A, k=119))
    assert late and not envelopes(recs) and dp.seq.n_restarts == 1


def test_a_counter_restart_mid_session_without_session_ids_is_found_by_device_time() -> None:
    dp = DeviceProcessor(DEVICE, P)
    out: list[R.Record] = []
    for q in range(500, 560):
        out += feed(dp, frame(q, T0 + (q - 500) * 50_000, k=q))[0]
    t = T0 + 60 * 50_000 + 20 * 1_000_000  # a 20 s reboot
    for q in range(40):
        recs, late = feed(dp, frame(q, t + q * 50_000, k=q))
        assert not late
        out += recs
    assert envelopes(out) == list(range(501, 560)) + list(range(1, 40))  # filters reset at the restart
    assert dp.stats.frames == 100
    assert dp.seq.n_restarts == 1 and dp.seq.n_duplicates == 0
    # a resend of a frame from before the restart: older device time -> a duplicate, not another restart
    recs, _late = feed(dp, frame(530, T0 + 30 * 50_000, k=530, resent=True))
    assert not envelopes(recs) and dp.seq.n_restarts == 1


@pytest.mark.parametrize("year_us, reason", [(946_684_800_000_000, "clock_past"),  # 2000-01-01
                                             (4_070_908_800_000_000, "clock_future")])  # 2099-01-01
def test_device_clocks_in_2000_and_2099_are_refused_and_counted(year_us: int, reason: str) -> None:
    dp = DeviceProcessor(DEVICE, P)
    with pytest.raises(WireError) as ei:
        dp.on_event(start(SESSION_A, year_us), NOW_US)
    assert (ei.value.reason, ei.value.status) == (reason, 422)
    assert dp.session is None  # no session opened from a refused event
    with pytest.raises(WireError) as ei:
        feed(dp, frame(0, year_us, SESSION_A))
    assert ei.value.reason == reason
    assert dp.seq.next_seq is None and dp.last_end_us is None and dp.chain is None
    tel = wire.telemetry_from_json({"seq": 0, "t_us": year_us, "stim_current_ua": 5000}, DEVICE)
    with pytest.raises(WireError) as ei:
        dp.on_telemetry(tel, NOW_US)
    assert ei.value.reason == reason and not dp.alerts.active()  # no over-current alert from 2099
    stats = dp.stream_stats(NOW_US / 1e6)
    assert stats is not None and stats.clock_refused == 3 and stats.frames == 0
    assert stats.time.year == time.gmtime(NOW_US / 1e6).tm_year  # dated by the tick, not by the device
    # a device that was offline for two days still uploads its buffered session
    old = NOW_US - 2 * 86_400_000_000
    dp.on_event(start(SESSION_A, old), NOW_US)
    recs, _late = feed(dp, frame(0, old, SESSION_A))
    assert dp.session is not None and dp.session.frames == 1


def test_out_of_order_frames_of_the_largest_size_keep_the_state_one_changelog_record() -> None:
    dp = DeviceProcessor(DEVICE, P)
    samples = RNG.integers(-2000, 2000, size=(wire.MAX_CHANNELS, 4000), dtype=np.int16)  # 512 KB: 1 s at 4 kHz

    def big(seq: int) -> Frame:
        return Frame(device_id=DEVICE, seq=seq, t_us=T0 + seq * 1_000_000, fs_hz=4000, scale_uv=0.1,
                     samples=samples)

    for seq in (0, 2, 3, 5, 7, 8, 9, 10):  # holes everywhere: the hold would keep four 512 KB frames
        feed(dp, big(seq))
        assert len(dp.to_state()) < 1_000_000  # Kafka's default message.max.bytes
    assert dp.stats.frames == 8 and not dp.seq.held and dp.seq.n_missing == 3

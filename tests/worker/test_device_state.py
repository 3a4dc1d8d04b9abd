"""The device state as the worker's changelog holds it: typed parts, a restore at any point
gives the same records as no restore, states of the previous layout (v3/v4) are still read,
and a field a saved state lacks takes its default."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import msgspec
from ingest import wire
from processors import records as R
from processors.worker.device import STATE_VERSION, DeviceProcessor, WorkerParams
from processors.worker.device.state import Parts
from tests.worker import script as S

P = WorkerParams()
#: saved by the code before the split (v4, one flat map) after the first SAVED_AT items of
#: `script.records()`: inside a smile, task 3 open, the rest baseline learned, one alert active
V4_STATE = Path(__file__).with_name("device_state_v4.bin")
SAVED_AT = 271


def encoded(recs: list[R.Record]) -> list[bytes]:
    return [R.encode(r) for r in recs]


def run(items, dp: DeviceProcessor | None = None, save_every: int = 0) -> tuple[DeviceProcessor, list[bytes]]:
    dp = dp or DeviceProcessor(S.DEVICE, P)
    out: list[bytes] = []
    for i, it in enumerate(items):
        out += encoded(S.feed(dp, it))
        if save_every and i % save_every == save_every - 1:
            data = dp.to_state()
            assert len(data) < 64_000
            dp = DeviceProcessor.from_state(data, P)
    return dp, out


def test_the_script_gives_every_kind_of_record() -> None:
    recs = _records(S.records())
    names = {type(r).__name__ for r in recs}
    assert names >= {"SessionSummary", "EnvelopeFrame", "BalanceRecord", "ActivationRecord", "QualityRecord",
                     "AlertRecord", "TelemetryRecord", "TaskWindowRecord"}
    alerts = {(r.alert_type, r.state) for r in recs if isinstance(r, R.AlertRecord)}
    assert {("battery_low", "raised"), ("electrode_off", "raised"), ("discomfort", "raised")} <= alerts


def _records(items) -> list[R.Record]:
    dp = DeviceProcessor(S.DEVICE, P)
    return [r for it in items for r in S.feed(dp, it)]


def test_a_restore_every_few_records_changes_nothing() -> None:
    items = S.records()
    _dp, straight = run(items)
    _dp, restored = run(items, save_every=23)
    assert restored == straight


def _decide_by_median_ratio(w) -> float | None:
    """The mains rule the v4 state was saved under (a line 6x the median of its neighbours: it
    called this white-noise recording 60 Hz, and the saved chain notches 60 Hz)."""
    best = w.ratio.max(axis=0)
    return (50.0, 60.0)[int(best.argmax())] if best.max() > 6.0 else None


def test_a_state_of_the_previous_layout_continues_as_if_never_saved(monkeypatch) -> None:
    monkeypatch.setattr("processors.worker.device.quality.decide", _decide_by_median_ratio)
    items = S.records()
    _dp, straight = run(items)
    _dp, head = run(items[:SAVED_AT])
    old = DeviceProcessor.from_state(V4_STATE.read_bytes(), P)
    assert old.rev == 1 and old.session is not None and old.life.open_task is not None
    assert old.rest.windows_seen >= 3 and old.alerts.active()
    _dp, tail = run(items[SAVED_AT:], old)
    assert head + tail == straight
    # and saved again in this layout
    again = DeviceProcessor.from_state(DeviceProcessor.from_state(V4_STATE.read_bytes(), P).to_state(), P)
    assert msgspec.msgpack.decode(again.to_state()[8:])["v"] == STATE_VERSION
    _dp, tail2 = run(items[SAVED_AT:], DeviceProcessor.from_state(V4_STATE.read_bytes(), P))
    assert tail2 == tail


def test_a_state_saved_before_epochs_is_read() -> None:
    d = msgspec.msgpack.decode(V4_STATE.read_bytes()[8:])
    d["v"] = 3
    d["seq"] = {**{k: v for k, v in d["seq"].items() if k != "epoch"}, "lost": [3, 4, 5, 6, 7], "late_seen": [],
                "counters": d["seq"]["counters"][:6]}
    d["stats"] = {k: v for k, v in d["stats"].items() if k not in ("restarts", "clock_refused")}
    old = DeviceProcessor.from_state(V4_STATE.read_bytes()[:8] + msgspec.msgpack.encode(d), P)
    assert old.seq.lost.ranges == [[3, 8]] and old.seq.n_restarts == 0 and old.stats.restarts == 0
    f = dataclasses.replace(S.frame(5, S.emg_uv(), session=None), resent=True)  # a resent copy
    _recs, late = old.on_frame(f, wire.encode_frame(f))
    assert late and old.seq.lost.ranges == [[3, 5], [6, 8]]


def test_a_field_missing_from_a_saved_state_takes_its_default() -> None:
    dp, _out = run(S.records()[:SAVED_AT])
    d = msgspec.msgpack.decode(dp.to_state()[8:])
    del d["parts"]["rest"]["windows_seen"]
    del d["parts"]["mains"]
    back = DeviceProcessor.from_state(b"\0" * 8 + msgspec.msgpack.encode(d), P)
    assert back.rest.windows_seen == 0 and back.rest.mean == dp.rest.mean
    assert back.mains.hz is None and not back.mains.detecting
    assert msgspec.structs.asdict(back.life) == msgspec.structs.asdict(dp.life)


def test_states_of_unknown_versions_or_shapes_are_refused() -> None:
    dp, _out = run(S.records()[:40])
    d = msgspec.msgpack.decode(dp.to_state()[8:])
    for bad in ({**d, "v": 99}, {**d, "parts": {"rest": {"mean": "loud"}}}, [1, 2]):
        try:
            DeviceProcessor.from_state(b"\0" * 8 + msgspec.msgpack.encode(bad), P)
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad!r:.80}")


def test_parts_default_to_a_fresh_device() -> None:
    dp = DeviceProcessor(S.DEVICE, P)
    assert msgspec.structs.asdict(dp.parts) == msgspec.structs.asdict(Parts())
    assert dp.session is None and dp.closing is None and not dp.stats.any()


def test_a_batch_of_frames_gives_what_one_frame_at_a_time_gives() -> None:
    x = S.emg_uv()
    start = S.records()[0]
    assert start.kind == "event"
    now_us = S.T0_US + 10_000_000
    frames = [S.frame(k, x) for k in range(200)]
    frames[50] = dataclasses.replace(frames[50], t_us=now_us + 10**12)  # refused: from the future
    frames[80], frames[81] = frames[81], frames[80]  # reordered
    one, batch = DeviceProcessor(S.DEVICE, P), DeviceProcessor(S.DEVICE, P)
    S.feed(one, start)
    S.feed(batch, start)
    a: list[bytes] = []
    refused_one = 0
    for f in frames:
        try:
            a += encoded(one.on_frame(f, wire.encode_frame(f), now_us)[0])
        except wire.WireError as exc:
            assert exc.reason == "clock_future"
            refused_one += 1
    b: list[bytes] = []
    refused: list[int] = []
    for k in range(0, len(frames), 37):
        res = batch.on_frames([(f, wire.encode_frame(f), now_us) for f in frames[k:k + 37]])
        b += encoded(res.records)
        refused += [k + i for i, _exc in res.refused]
    assert a == b and refused == [50] and refused_one == 1
    assert one.stats == batch.stats and batch.stats.clock_refused == 1


def test_a_restore_mid_calibration_changes_nothing() -> None:
    from ingest.simulator import Simulation

    sim = Simulation(patients=1, sessions=1, duration_s=24, seed=5, fault_prob=0.0,
                     therapy_types=("biofeedback_exercise",), start_us=S.T0_US)
    items = [S.Item(r.kind, r.item.t_us, r.item) for r in sim.device_records(0)]
    straight = DeviceProcessor(sim.device_ids[0], P)
    restored = DeviceProcessor(sim.device_ids[0], P)
    a: list[bytes] = []
    b: list[bytes] = []
    for i, it in enumerate(items):
        a += encoded(S.feed(straight, it))
        b += encoded(S.feed(restored, it))
        if i % 37 == 36:
            restored = DeviceProcessor.from_state(restored.to_state(), P)
    assert a == b
    recs = [R.decode(x) for x in a]
    assert straight.calib.mvc.done and straight.calib.rest.done
    assert any(isinstance(r, R.BalanceRecord) and r.normalized for r in recs)
    assert any(isinstance(r, R.ActivationRecord) and r.peak_pct_mvc is not None for r in recs)

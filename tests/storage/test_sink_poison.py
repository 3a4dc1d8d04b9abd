"""Records the sink cannot store, mixed among good ones: dead-lettered, the rest stored, the sink goes on."""

from __future__ import annotations

import asyncio
import math
import struct
import uuid
from dataclasses import dataclass
from datetime import timedelta

import msgspec
import numpy as np
import psycopg
import pytest
from kafka import KafkaProducer

from mimetic import topics
from mimetic.config import Settings
from mimetic.kafka_admin import ensure_topics
from processors import records as r
from processors.sink import SINK_TOPICS, Sink
from processors.storage.writer import DbWriter, RecordRejected

from .helpers import T0, count_rows, envelope_frames, expected_rows, mixed_records, produce
from .test_sink import committed_total, dead_letters, wait_for

pytestmark = pytest.mark.stack

N_FRAMES = 100


@dataclass(frozen=True)
class Poison:
    """One bad payload, where it landed, and the reason prefix expected for it."""

    what: str
    suffix: str
    key: bytes
    value: bytes
    reason: str


def poison_records(device: str, session_id: uuid.UUID) -> list[Poison]:
    """Every kind of unstorable record the sink has met or could meet (bypassing the gateway)."""
    t = T0 + timedelta(hours=1)
    frame = envelope_frames(device, 1, session_id, t0=t)[0]

    def env(**changes) -> bytes:
        return r.encode(msgspec.structs.replace(frame, **changes))

    # a msgpack timestamp 2**40 s after 1970: no datetime, and past PostgreSQL's year 294276
    far = msgspec.msgpack.Ext(-1, struct.pack(">IQ", 0, 2 ** 40))
    as_map = msgspec.msgpack.decode(env())
    out_of_range = msgspec.msgpack.encode({**as_map, "time": far})
    bal = r.BalanceRecord(device_id=device, session_id=session_id, time=t, time_end=t + timedelta(seconds=1),
                          window_kind="sliding", muscle="frontalis", left=1.0, right=1.0, ai=0.0)
    key = device.encode()
    return [
        Poison("seq 2**63", "derived.features", key, env(seq=2 ** 63), "unencodable"),
        Poison("seq 2**64-1", "derived.features", key, env(seq=2 ** 64 - 1, time=t + timedelta(seconds=1)),
               "unencodable"),
        Poison("telemetry seq 2**64-1", "derived.telemetry", key,
               r.encode(r.TelemetryRecord(device_id=device, time=t, seq=2 ** 64 - 1, battery_pct=50.0)),
               "unencodable"),
        Poison("float4 overflow", "derived.telemetry", key,
               r.encode(r.TelemetryRecord(device_id=device, time=t, seq=7, battery_pct=1e300)), "unencodable"),
        Poison("fs_hz NaN", "derived.features", key, env(fs_hz=math.nan, time=t + timedelta(seconds=2)),
               "unencodable"),
        Poison("channel out of int2", "derived.features", key,
               r.encode(r.QualityRecord(device_id=device, time=t, window_s=1.0, channel=40_000)), "unencodable"),
        Poison("time out of range", "derived.features", key, out_of_range, "undecodable"),
        Poison("ai NaN", "derived.balance", key, r.encode(msgspec.structs.replace(bal, ai=math.nan)),
               "rejected by database"),
        Poison("NUL in text", "derived.balance", key,
               r.encode(msgspec.structs.replace(bal, muscle="front\x00alis", time=t + timedelta(seconds=5))),
               "rejected by database"),
        Poison("task window ends before it starts", "derived.sessions", str(session_id).encode(),
               r.encode(r.TaskWindowRecord(device_id=device, session_id=session_id, task="frown", repetition=9,
                                           time=t, time_end=t - timedelta(seconds=3))),
               "rejected by database"),
    ]


def produce_poison(s: Settings, poison: list[Poison]) -> dict[tuple[str, int, int], Poison]:
    """Produce straight to Kafka; the (topic, partition, offset) of each."""
    p = KafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all")
    try:
        futures = [(x, p.send(f"{s.topic_prefix}.{x.suffix}", key=x.key, value=x.value)) for x in poison]
        p.flush(timeout=30)
        return {(md.topic, md.partition, md.offset): x for x, md in ((x, f.get(30)) for x, f in futures)}
    finally:
        p.close()


def _stored_envelopes(db: psycopg.Connection, device: str) -> list[tuple]:
    rows = db.execute("select seq, time, fs_hz, env, clipped from envelope where device_id = %s order by seq",
                      (device,)).fetchall()
    return [(seq, time, fs, np.asarray(e, dtype=np.float32).tobytes(), c) for seq, time, fs, e, c in rows]


async def _run_sink(s: Settings, until) -> Sink:
    sink = Sink(s)
    task = asyncio.create_task(sink.run())
    try:
        await wait_for(until, 90)
        assert not task.done(), "the sink exited"
    finally:
        sink.stop()
        await asyncio.wait_for(task, 30)
    return sink


def test_unstorable_records_are_dead_lettered_and_the_good_rows_stored_exactly(
        sink_settings: Settings, db: psycopg.Connection) -> None:
    tag = uuid.uuid4().hex[:6]
    # the reference: the same good records, on their own topics, without any bad one
    clean = sink_settings.model_copy(update={"topic_prefix": sink_settings.topic_prefix + "-clean",
                                             "sink_group": sink_settings.sink_group + "-clean"})
    ensure_topics(clean, (*SINK_TOPICS, topics.DEAD_LETTERS))
    ref_devices = [f"dev-ref{i}-{tag}" for i in range(2)]
    ref = [rec for d in ref_devices for rec in mixed_records(d, N_FRAMES, uuid.uuid4())]
    produce(clean, ref)
    asyncio.run(_run_sink(clean, lambda: committed_total(clean) >= len(ref)))
    assert dead_letters(clean, timeout_ms=1000) == []

    s = sink_settings
    devices = [f"dev-poi{i}-{tag}" for i in range(2)]
    sessions = [uuid.uuid4() for _ in devices]
    good = [mixed_records(d, N_FRAMES, sid) for d, sid in zip(devices, sessions)]
    half = len(good[0]) // 2
    # bad records of their own device and of a good one, produced between the good ones
    produce(s, good[0][:half] + good[1][:half])
    poison = produce_poison(s, poison_records(f"dev-bad-{tag}", uuid.uuid4()) + poison_records(devices[0],
                                                                                               sessions[0]))
    produce(s, good[0][half:] + good[1][half:])
    n_msgs = sum(map(len, good)) + len(poison)
    later = envelope_frames(devices[1], 20, sessions[1], seq0=N_FRAMES)

    async def scenario() -> Sink:
        sink = Sink(s)
        task = asyncio.create_task(sink.run())
        try:
            await wait_for(lambda: committed_total(s) >= n_msgs, 90)
            assert not task.done(), "the sink exited"
            # still running: later records are stored
            await asyncio.to_thread(produce, s, later)
            await wait_for(lambda: committed_total(s) >= n_msgs + len(later), 60)
            assert not task.done(), "the sink exited"
        finally:
            sink.stop()
            await asyncio.wait_for(task, 30)
        return sink

    m = asyncio.run(scenario()).metrics
    assert committed_total(s) == n_msgs + len(later)
    # the good rows are exactly those of the run without the bad records
    for dev, ref_dev in zip(devices, ref_devices):
        want = count_rows(db, ref_dev)
        if dev == devices[1]:
            want["envelope"] += len(later)
        assert count_rows(db, dev) == want, dev
    assert _stored_envelopes(db, devices[0]) == _stored_envelopes(db, ref_devices[0])
    assert _stored_envelopes(db, devices[1])[:N_FRAMES] == _stored_envelopes(db, ref_devices[1])
    assert count_rows(db, f"dev-bad-{tag}") == dict.fromkeys(count_rows(db, f"dev-bad-{tag}"), 0)

    # each bad record in the dead letters, once, with its reason and source offset
    dl = dead_letters(s)
    got = {}
    for msg in dl:
        h = {k: v.decode() for k, v in msg.headers}
        src = (h["source_topic"], int(h["source_partition"]), int(h["source_offset"]))
        assert src not in got, f"dead-lettered twice: {src}"
        got[src] = (h["reason"], msg.value)
    assert set(got) == set(poison)
    for src, x in poison.items():
        reason, value = got[src]
        assert reason.startswith(x.reason + ": "), (x.what, reason)
        assert value == x.value, x.what
    by_reason = {p.reason for p in poison.values()}
    for label in by_reason:
        n = sum(1 for p in poison.values() if p.reason == label)
        assert m.value("mimetic_sink_dead_letters_total", reason=label) == n, label
    # bisection, not one write per record: at most 2 log2(n) + 1 writes per bad record
    stored_bad = sum(1 for p in poison.values() if p.reason != "undecodable")
    assert 0 < m.value("mimetic_sink_isolation_writes_total") <= stored_bad * (2 * math.log2(n_msgs) + 1)
    assert m.value("mimetic_sink_db_up") == 1
    # the operators' pipeline_stats rows count every dead letter and every stored row
    dead, rows = db.execute("select sum(dead_letters), sum(rows_written) from pipeline_stats "
                            "where instance = %s", (f"{s.sink_group}/mimetic-sink",)).fetchone()
    stored = [count_rows(db, d) for d in devices]
    assert dead == len(poison)
    assert rows == sum(sum(c.values()) - c["alert"] for c in stored)   # alert state rows are upserts


class _OutageAfterRejection(DbWriter):
    """A real writer whose database becomes unreachable (a dead port) for `outage_writes`
    writes right after the first rejected batch: an outage in the middle of the bisection."""

    def __init__(self, dsn: str, dead_dsn: str, outage_writes: int):
        super().__init__(dsn)
        self.good_dsn, self.dead_dsn, self.outage_left = dsn, dead_dsn, outage_writes
        self.rejected = False

    def write(self, batch, pipeline=None):
        down = self.rejected and self.outage_left > 0
        if down:
            self.outage_left -= 1
            self.close()
        self.dsn = self.dead_dsn if down else self.good_dsn
        try:
            return super().write(batch, pipeline)
        except RecordRejected:
            self.rejected = True
            raise
        finally:
            if down:
                self.close()


def test_an_outage_while_isolating_dead_letters_no_good_record(sink_settings: Settings,
                                                                db: psycopg.Connection) -> None:
    s = sink_settings.model_copy(update={"sink_refresh_interval_s": 0.0})
    tag = uuid.uuid4().hex[:6]
    device = f"dev-iso-{tag}"
    good = mixed_records(device, 40, uuid.uuid4())
    produce(s, good[:30])
    poison = produce_poison(s, poison_records(f"dev-isobad-{tag}", uuid.uuid4())[:2])
    produce(s, good[30:])
    n_msgs = len(good) + len(poison)
    dead_dsn = s.model_copy(update={"pg_port": 1}).db_dsn()     # nothing listens there

    async def scenario() -> Sink:
        sink = Sink(s)
        sink.writer = _OutageAfterRejection(sink.dsn, dead_dsn, outage_writes=3)
        task = asyncio.create_task(sink.run())
        try:
            await wait_for(lambda: committed_total(s) >= n_msgs, 90)
            assert not task.done(), "the sink exited"
        finally:
            sink.stop()
            await asyncio.wait_for(task, 30)
        return sink

    m = asyncio.run(scenario()).metrics
    assert m.value("mimetic_sink_db_retries_total") >= 3
    assert count_rows(db, device) == expected_rows(40)
    headers = [{k: v.decode() for k, v in msg.headers} for msg in dead_letters(s)]
    got = [(h["source_topic"], int(h["source_partition"]), int(h["source_offset"])) for h in headers]
    assert sorted(got) == sorted(poison)


def test_a_dead_letter_too_large_for_its_topic_goes_without_its_value(sink_settings: Settings) -> None:
    """A bad record just under Kafka's message limit: with the dead-letter headers it is over."""
    s = sink_settings
    value = b"\x93" + b"x" * 1_048_479        # undecodable, and about as large as the broker takes
    p = KafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all", max_request_size=2 * 1024 * 1024)
    try:
        md = p.send(f"{s.topic_prefix}.derived.features", key=b"dev-big", value=value).get(30)
    finally:
        p.close()
    good = envelope_frames(f"dev-big-{uuid.uuid4().hex[:6]}", 5)
    produce(s, good)

    async def scenario() -> Sink:
        return await _run_sink(s, lambda: committed_total(s) >= 1 + len(good))

    m = asyncio.run(scenario()).metrics
    (dl,) = dead_letters(s)
    h = {k: v.decode() for k, v in dl.headers}
    assert (h["source_topic"], int(h["source_partition"]), int(h["source_offset"])) == (md.topic, md.partition,
                                                                                         md.offset)
    assert h["reason"].startswith("undecodable") and dl.value == b"" and h["value_dropped"] == str(len(value))
    assert m.value("mimetic_sink_dead_letters_total", reason="undecodable") == 1

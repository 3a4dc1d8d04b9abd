"""The sink against the real Kafka and TimescaleDB: writes, idempotency, dead letters."""

from __future__ import annotations

import asyncio
import time
import uuid

import psycopg
import pytest
from kafka import KafkaConsumer, TopicPartition

from mimetic import topics
from mimetic.config import Settings
from processors import records as r
from processors.sink import SINK_TOPICS, Sink

from .helpers import count_rows, expected_rows, mixed_records, produce

pytestmark = pytest.mark.stack


async def wait_for(pred, timeout: float = 60.0, every: float = 0.25):
    end = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(pred)
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(every)


def committed_total(s: Settings, group: str | None = None) -> int:
    c = KafkaConsumer(bootstrap_servers=s.kafka_bootstrap, group_id=group or s.sink_group,
                      enable_auto_commit=False)
    try:
        total = 0
        for spec in SINK_TOPICS:
            for p in range(spec.partition_count(s)):
                total += c.committed(TopicPartition(spec.name(s), p)) or 0
        return total
    finally:
        c.close()


def dead_letters(s: Settings, timeout_ms: int = 3000) -> list:
    c = KafkaConsumer(topics.DEAD_LETTERS.name(s), bootstrap_servers=s.kafka_bootstrap,
                      auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=timeout_ms)
    try:
        return list(c)
    finally:
        c.close()


async def run_until(sink: Sink, pred, timeout: float = 60.0):
    task = asyncio.create_task(sink.run())
    try:
        return await wait_for(pred, timeout)
    finally:
        sink.stop()
        await asyncio.wait_for(task, 30)


def test_sink_writes_once_and_replays_write_nothing(sink_settings: Settings, db: psycopg.Connection) -> None:
    s = sink_settings
    device = f"dev-sink-{uuid.uuid4().hex[:6]}"
    recs = mixed_records(device, 200, uuid.uuid4())
    garbage = [("derived.features", device.encode(), b"\x93not a record"),
               ("derived.alerts", device.encode(), r.encode(recs[0])[:-7])]   # truncated payload
    produce(s, recs, garbage)
    want = expected_rows(200)
    n_msgs = len(recs) + len(garbage)

    async def first_pass():
        sink = Sink(s)
        await run_until(sink, lambda: committed_total(s) >= n_msgs)
        return sink.metrics

    m = asyncio.run(first_pass())
    assert count_rows(db, device) == want
    assert m.value("mimetic_sink_rows_written_total", table="envelope") == 200
    assert m.value("mimetic_sink_dead_letters_total", reason="undecodable") == 2
    assert committed_total(s) == n_msgs
    stats = db.execute("select sum(records), sum(rows_written), sum(dead_letters) from pipeline_stats "
                       "where instance = %s", (f"{s.sink_group}/mimetic-sink",)).fetchone()
    assert stats[0] >= len(recs) and stats[1] == sum(want.values()) - want["alert"]   # alert state rows are upserts, not counted
    dl = dead_letters(s)
    assert len(dl) == 2
    reasons = [dict(msg.headers)["reason"].decode() for msg in dl]
    assert all(x.startswith("undecodable") for x in reasons), reasons
    assert {dict(msg.headers)["source_topic"].decode() for msg in dl} == {
        f"{s.topic_prefix}.derived.features", f"{s.topic_prefix}.derived.alerts"}

    # the same records again (a producer retry / processor replay) ...
    produce(s, recs)

    async def second_pass():
        sink = Sink(s)
        await run_until(sink, lambda: committed_total(s) >= n_msgs + len(recs))
        return sink.metrics

    m2 = asyncio.run(second_pass())
    assert count_rows(db, device) == want
    assert m2.value("mimetic_sink_rows_written_total", table="envelope") == 0
    assert m2.value("mimetic_sink_duplicate_rows_total", table="envelope") == 200

    # ... and everything from the start under a fresh group (offsets reset): still nothing new
    s3 = s.model_copy(update={"sink_group": s.sink_group + "-reset"})

    async def third_pass():
        sink = Sink(s3)
        await run_until(sink, lambda: committed_total(s3) >= n_msgs + len(recs))
        return sink.metrics

    asyncio.run(third_pass())
    assert count_rows(db, device) == want
    # the alert episode was raised then cleared, whatever the replays
    row = db.execute("select raised_at < cleared_at from alert where device_id = %s", (device,)).fetchone()
    assert row == (True,)


def test_rejected_record_is_dead_lettered_and_the_rest_written(sink_settings: Settings,
                                                                db: psycopg.Connection) -> None:
    s = sink_settings
    device = f"dev-rej-{uuid.uuid4().hex[:6]}"
    recs = mixed_records(device, 40, uuid.uuid4())
    bad = r.BalanceRecord(device_id=device, time=recs[0].time, time_end=recs[0].time, window_kind="task",
                          muscle="frontalis", left=1.0, right=1.0, ai=3.0)   # violates the AI check
    produce(s, [*recs, bad])

    async def go():
        sink = Sink(s)
        await run_until(sink, lambda: committed_total(s) >= len(recs) + 1)

    asyncio.run(go())
    assert count_rows(db, device) == expected_rows(40)
    dl = dead_letters(s)
    assert len(dl) == 1 and dict(dl[0].headers)["reason"].startswith(b"rejected by database")


def test_aborted_transactions_are_not_stored(sink_settings: Settings, db: psycopg.Connection) -> None:
    """The processors write with Kafka transactions; the sink reads committed records only."""
    from aiokafka import AIOKafkaProducer

    s = sink_settings
    device = f"dev-tx-{uuid.uuid4().hex[:6]}"
    aborted = mixed_records(device, 40, uuid.uuid4())
    committed = mixed_records(device, 40, uuid.uuid4(), t0=aborted[0].time.replace(year=2027))

    async def go():
        p = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, transactional_id=f"tx-{device}")
        await p.start()
        try:
            for batch, commit in ((aborted, False), (committed, True)):
                async with p.transaction() if commit else _Abort(p):
                    for rec in batch:
                        key, value, headers = r.to_message(rec)
                        await p.send(f"{s.topic_prefix}.{r.TOPIC_OF_KIND[r.kind_of(rec)]}", value=value, key=key,
                                     headers=headers)
        finally:
            await p.stop()
        sink = Sink(s)
        await run_until(sink, lambda: sink.metrics.value("mimetic_sink_records_total", kind="envelope") >= 40
                        and count_rows(db, device)["task_window"] >= 1)
        await asyncio.sleep(1.0)   # anything aborted would have come first, in offset order

    asyncio.run(go())
    # the aborted records are in the log (a read_uncommitted reader sees both batches) ...
    c = KafkaConsumer(f"{s.topic_prefix}.derived.features", bootstrap_servers=s.kafka_bootstrap,
                      auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=3000,
                      isolation_level="read_uncommitted")
    try:
        envelopes = [m for m in c if m.key == device.encode() and dict(m.headers or []).get("kind") == b"envelope"]
    finally:
        c.close()
    assert len(envelopes) == 80
    # ... but only the committed ones are stored
    got = db.execute("select min(time), count(*) from envelope where device_id = %s", (device,)).fetchone()
    assert got[1] == 40 and got[0].year == 2027, got


class _Abort:
    """`async with`: a transaction that is aborted at the end."""

    def __init__(self, producer):
        self.p = producer

    async def __aenter__(self):
        await self.p.begin_transaction()

    async def __aexit__(self, *exc):
        await self.p.flush()          # the records reach the log, then the transaction is aborted
        await self.p.abort_transaction()
        return False


def test_two_sinks_in_one_group_share_the_work_exactly(sink_settings: Settings, db: psycopg.Connection) -> None:
    s = sink_settings.model_copy(update={"sink_batch_size": 200, "sink_linger_ms": 50})
    devices = [f"dev-rb{i}-{uuid.uuid4().hex[:5]}" for i in range(4)]
    recs = {d: mixed_records(d, 600, uuid.uuid4()) for d in devices}
    total = sum(len(v) for v in recs.values())

    async def go():
        a, b = Sink(s, client_id="sink-a"), Sink(s, client_id="sink-b")
        ta = asyncio.create_task(a.run())
        await asyncio.to_thread(produce, s, recs[devices[0]] + recs[devices[1]])
        tb = asyncio.create_task(b.run())       # joins mid-stream: rebalance
        await asyncio.to_thread(produce, s, recs[devices[2]] + recs[devices[3]])
        try:
            await wait_for(lambda: committed_total(s) >= total, 90)
        finally:
            a.stop()
            b.stop()
            await asyncio.wait_for(asyncio.gather(ta, tb), 30)
        return a.metrics, b.metrics

    ma, mb = asyncio.run(go())
    for d in devices:
        assert count_rows(db, d) == expected_rows(600), d
    assert ma.value("mimetic_sink_batches_total") > 0


def test_stop_while_the_database_is_unreachable_commits_nothing(sink_settings: Settings) -> None:
    s = sink_settings.model_copy(update={"sink_retry_max_s": 0.5, "sink_refresh_interval_s": 0.0})
    device = f"dev-stop-{uuid.uuid4().hex[:6]}"
    recs = mixed_records(device, 20, uuid.uuid4())
    produce(s, recs)
    dead_dsn = s.model_copy(update={"pg_port": 1}).db_dsn()     # nothing listens there

    async def go():
        sink = Sink(s, dsn=dead_dsn)
        task = asyncio.create_task(sink.run())
        await wait_for(lambda: sink.metrics.value("mimetic_sink_db_retries_total") >= 2, 30)
        sink.stop()
        await asyncio.wait_for(task, 10)      # returns promptly, without the database
        return sink.metrics

    m = asyncio.run(go())
    assert m.value("mimetic_sink_db_up") == 0
    assert committed_total(s) == 0

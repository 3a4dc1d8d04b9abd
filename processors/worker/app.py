"""The Faust application run by `mimetic worker`.

One agent consumes the three device topics (frames, telemetry, session events)
plus the worker's own tick topic, all keyed by device id and co-partitioned, and
keeps one `DeviceProcessor` state per device in a changelog-backed table. With
`processing_guarantee="exactly_once"`, the derived records, the table's
changelog writes and the input offsets of one partition are committed in one
Kafka transaction: a worker killed at any point resumes from a state that
matches its committed offsets, and consumers reading committed data (the sink)
never see the output of an aborted attempt.

Wall-clock liveness (a device gone silent, a session that never ended) cannot
update a table from a timer, so a timer publishes tick records to the tick topic
and the agent handles them like any other input: replayable and in the same
transaction as everything else.
"""

from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict

import faust
from prometheus_client import Counter, Gauge, Histogram

from ingest import wire
from mimetic import topics as T
from mimetic.config import Settings
from processors import records as R
from processors.worker.device import DeviceProcessor, WorkerParams, state_revision

log = logging.getLogger("mimetic.worker")

CAUGHT_UP_FRAMES = 50  # a partition this close to its end counts as live for wall-clock checks


FRAMES_IN = Counter("mimetic_worker_frames_total", "frames consumed")
RECORDS_OUT = Counter("mimetic_worker_records_total", "derived records produced", ["kind"])
DEAD = Counter("mimetic_worker_dead_letters_total", "records sent to the dead-letter topic", ["reason"])
LATENCY = Histogram("mimetic_worker_ingest_to_output_seconds", "gateway receive -> derived record produced",
                    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
DEVICES = Gauge("mimetic_worker_devices", "devices with state in this worker's memory")


def _patch_faust_recovery_highwaters() -> None:
    """Ask the broker for changelog highwaters instead of trusting the fetcher's cache.

    faust-streaming 0.15.3 takes, under exactly_once, each changelog partition's highwater
    from `consumer.last_stable_offset(tp)`: a value cached from fetch responses, None for a
    partition this fresh process has not fetched yet. Recovery then treats the changelog as
    empty and a restarted worker starts its devices from scratch (measured with the SIGKILL
    test: a filter reset at the restart frame). aiokafka's `end_offsets` sends ListOffsets
    with the consumer's isolation level, so under read_committed it returns the real last
    stable offset.
    """
    from faust.transport.drivers import aiokafka as faust_aiokafka

    thread_cls = faust_aiokafka.AIOKafkaConsumerThread
    if getattr(thread_cls, "_mimetic_patched", False):
        return

    async def _highwaters(self, partitions):
        return await self._ensure_consumer().end_offsets(list(partitions))

    thread_cls._highwaters = _highwaters
    thread_cls._mimetic_patched = True


def make_app(s: Settings) -> faust.App:
    _patch_faust_recovery_highwaters()
    params = WorkerParams.from_settings(s)
    app = faust.App(
        s.worker_id,
        broker=f"kafka://{s.kafka_bootstrap}",
        store="memory://",
        processing_guarantee=s.worker_processing_guarantee,
        topic_partitions=s.topic_partitions,
        topic_replication_factor=s.topic_replication,
        web_host="127.0.0.1",
        web_port=s.worker_web_port,
        web_in_thread=False,
        broker_commit_interval=s.worker_commit_interval_s,
        consumer_auto_offset_reset="earliest",
        table_cleanup_interval=60.0,
        stream_wait_empty=False,
        producer_linger_ms=5,
        producer_max_request_size=4 * 1024 * 1024,
        logging_config=None,
        # a killed worker's partitions move on after this long (Faust's default is 60 s)
        broker_session_timeout=s.worker_group_timeout_s,
        broker_heartbeat_interval=min(3.0, s.worker_group_timeout_s / 3),
        # the check compares a RocksDB persisted offset with the changelog's highwater; with the
        # memory store and read_committed highwaters during a rebalance it crashed a healthy worker
        # (measured: "persisted offset 666 > highwater -1" right after a SIGKILLed peer)
        recovery_consistency_check=False,
    )
    raw = dict(key_serializer="raw", value_serializer="raw")
    source = app.topic(T.RAW_FRAMES.name(s), T.TELEMETRY.name(s), T.SESSION_EVENTS.name(s), T.WORKER_TICKS.name(s),
                       **raw)
    ticks = app.topic(T.WORKER_TICKS.name(s), partitions=s.topic_partitions, **raw)
    out = {suffix: app.topic(f"{s.topic_prefix}.{suffix}", **raw) for suffix in set(R.TOPIC_OF_KIND.values())}
    dead = app.topic(T.DEAD_LETTERS.name(s), **raw)
    state = app.Table("device-state", default=None, partitions=s.topic_partitions, key_type=bytes,
                      value_type=bytes)

    cache: OrderedDict[str, DeviceProcessor] = OrderedDict()  # live objects, newest revision
    frames_topic, telemetry_topic, events_topic = (T.RAW_FRAMES.name(s), T.TELEMETRY.name(s),
                                                   T.SESSION_EVENTS.name(s))

    last_frame_offset: dict[int, int] = {}

    def _frames_lag(partition: int) -> int:
        """Frames waiting in this partition (from the consumer's last fetch)."""
        from faust.types import TP

        try:
            hw = app.consumer.highwater(TP(frames_topic, partition))
        except Exception:
            return 0
        if hw is None or partition not in last_frame_offset:
            return 10**9  # nothing processed here yet since (re)start: not live
        return max(0, hw - 1 - last_frame_offset[partition])

    def load(device_id: str) -> DeviceProcessor:
        """The device's processor: the cached object unless the table holds a newer revision.

        Compared by revision, never by content: Faust may re-apply this worker's own changelog
        records to the table after it has moved on (measured), and an older state must never
        replace the live one.
        """
        stored = state.get(device_id.encode())
        hit = cache.get(device_id)
        if hit is not None and (stored is None or hit.rev >= state_revision(stored)):
            cache.move_to_end(device_id)
            return hit
        if stored is None:
            return DeviceProcessor(device_id, params)
        try:
            dp = DeviceProcessor.from_state(stored, params)
        except (ValueError, KeyError, TypeError) as exc:  # a state of another code version
            log.warning("state of %s unreadable (%s): starting it afresh", device_id, exc)
            dp = DeviceProcessor(device_id, params)
            dp.rev = state_revision(stored)
            return dp
        log.info("restored %s from the table at revision %d (next seq %s)", device_id, dp.rev,
                 dp.seq.next_seq)
        return dp

    async def save(dp: DeviceProcessor, partition: int) -> None:
        """Store the device state locally and in the changelog, inside the partition's open transaction.

        Two Faust paths lose the order that recovery relies on (the last changelog record of
        a key wins), both measured with SIGKILL tests: `table[key] = value` queues the record in
        a producer buffer that is not flushed before the input offsets commit (state behind
        offsets), and an event attachment is published at commit time grouped by *source*
        partition (frames, events, telemetry, ticks), so a state saved on a telemetry record
        can land after a newer one saved on a frame. A forced send goes into the transaction
        of this partition at once, in processing order, and commits with the offsets.
        """
        data = dp.to_state()
        key = dp.device_id.encode()
        state.data[key] = data
        await state.changelog_topic.send(key=key, value=data, partition=partition, force=True)
        cache[dp.device_id] = dp
        cache.move_to_end(dp.device_id)
        while len(cache) > 20_000:
            cache.popitem(last=False)
        DEVICES.set(len(cache))

    async def emit(recs: list[R.Record], device_id: str) -> None:
        key = device_id.encode()
        for rec in recs:
            kind = R.kind_of(rec)
            await out[R.TOPIC_OF_KIND[kind]].send(key=key, value=R.encode(rec), headers=R.headers_for(rec))
            RECORDS_OUT.labels(kind).inc()

    async def dead_letter(ev, reason: str, detail: str) -> None:
        headers = [("reason", reason.encode()), ("detail", detail[:500].encode()),
                   ("source-topic", ev.message.topic.encode()),
                   ("source-partition", str(ev.message.partition).encode()),
                   ("source-offset", str(ev.message.offset).encode()), ("stage", b"worker")]
        await dead.send(key=ev.key, value=ev.value, headers=headers)
        DEAD.labels(reason).inc()

    @app.agent(source, name="device-pipeline")
    async def device_pipeline(stream):
        async for ev in stream.events():
            progress["last_event_s"], progress["armed"] = time.monotonic(), True
            topic = ev.message.topic
            key = ev.key.decode("utf-8", "replace") if ev.key else ""
            try:
                if topic == frames_topic:
                    frame, meta = wire.decode_frame_record(ev.value, ev.message.headers)
                    if frame.device_id != key:
                        raise wire.WireError("device_id_mismatch", f"key {key!r}, frame {frame.device_id!r}")
                    dp = load(key)
                    last_frame_offset[ev.message.partition] = ev.message.offset
                    recs, late = dp.on_frame(frame, ev.value)
                    dp.last_arrival_s = (meta.received_at_us or 0) / 1e6 or dp.last_arrival_s
                    FRAMES_IN.inc()
                    if meta.received_at_us:
                        LATENCY.observe(max(0.0, time.time() - meta.received_at_us / 1e6))
                    for why in late:
                        await dead_letter(ev, "late", why)
                elif topic == telemetry_topic:
                    t, _meta = wire.decode_telemetry_record(ev.value, ev.message.headers)
                    dp = load(key)
                    recs = dp.on_telemetry(t)
                elif topic == events_topic:
                    e, _meta = wire.decode_event_record(ev.value, ev.message.headers)
                    dp = load(key)
                    recs = dp.on_event(e)
                else:  # tick
                    dp = load(key)
                    now_s = float(ev.value.decode())
                    # wall-clock silence only means something when this partition's frames are caught up
                    if _frames_lag(ev.message.partition) <= CAUGHT_UP_FRAMES:
                        recs = dp.on_tick(now_s, dp.last_arrival_s)
                    else:
                        recs = []
                    stats = dp.stream_stats(now_s)
                    if stats is not None:
                        recs.append(stats)
            except wire.WireError as exc:
                await dead_letter(ev, exc.reason, str(exc))
                continue
            except Exception as exc:  # a poison record must not stop the pipeline
                log.exception("processing failed for %s record of %s", topic, key)
                cache.pop(key, None)  # the object may be half-updated: reload from the table
                await dead_letter(ev, "processing_error", f"{type(exc).__name__}: {exc}")
                continue
            await emit(recs, key)
            await save(dp, ev.message.partition)

    progress = {"last_event_s": time.monotonic(), "armed": False}  # armed by the first processed record

    @app.timer(interval=10.0)
    async def watchdog() -> None:
        """Exit when frames wait but nothing has been processed for a long time.

        A worker whose transactional producer was fenced (seen after repeated SIGKILLs of its
        predecessors) stays up but can commit nothing; exiting lets its supervisor restart it
        and the group hand its partitions on, instead of hanging silently.
        """
        idle_s = time.monotonic() - progress["last_event_s"]
        if not progress["armed"] or idle_s < s.worker_stall_timeout_s:
            return
        waiting = [p for p in {tp.partition for tp in app.consumer.assignment() if tp.topic == frames_topic}
                   if 0 < _frames_lag(p) < 10**9]
        if waiting:
            log.error("no record processed for %.0f s while partitions %s have frames waiting: exiting so the "
                      "worker can be restarted", idle_s, sorted(waiting))
            os._exit(70)

    @app.timer(interval=s.worker_tick_interval_s)
    async def tick() -> None:
        """Ask every device with state on this worker to check its liveness."""
        now = f"{time.time():.3f}".encode()
        assigned = {tp.partition for tp in app.consumer.assignment() if tp.topic == frames_topic}
        for key in list(state.keys()):
            p = _partition_of(key, s.topic_partitions)
            if p not in assigned:
                continue
            device_id = key.decode()
            try:
                dp = load(device_id)
            except Exception:
                continue
            cache[device_id] = dp
            if dp.session is not None or any(dp.stats.values()):
                await ticks.send(key=key, value=now, partition=p)

    return app


def _partition_of(key: bytes, n_partitions: int) -> int:
    """The default Kafka partitioner (murmur2 of the key), as producers use it."""
    from kafka.partitioner.default import murmur2

    return (murmur2(key) & 0x7FFFFFFF) % n_partitions

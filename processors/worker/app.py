"""The Faust application run by `mimetic worker`.

One agent consumes the three device topics (frames, telemetry, session events)
plus the worker's own tick topic, all keyed by device id and co-partitioned, in
batches (`take_events`), and keeps one `DeviceProcessor` state per device in a
changelog-backed table.

Exactly once in effect, without Kafka transactions. For every batch:

0. only records the input cursors admit are applied (`cursors.py`): this worker's partitions, each in
   offset order without holes; the others are dropped unacknowledged (and a hole is sought back);
1. each device's records are applied to its state in offset order; a record whose
   offset the state has already applied (`DeviceProcessor.applied`) is skipped;
2. the derived records and dead letters are produced and their delivery awaited
   (acks=all);
3. the batch's input records are held unacknowledged (`Held`), the devices it changed noted.

Every `worker_checkpoint_interval_s` (after a batch, or from a timer when input is quiet or a
rebalance waits for every fetched record to be acknowledged) a checkpoint sends the state of every
device changed since the last one to the changelog, and only then acknowledges the held records;
Faust's at_least_once commit flushes the producer before it commits those offsets. Saving per
checkpoint instead of per batch cut the changelog from ten ~13 KB states per device and second to
one.

After a crash at any point the restored state is at or ahead of the committed
offsets: records it already holds are skipped by offset, the others are applied
again and produce the same derived records (deterministic, keyed by device time),
which the sink stores once by their natural keys.

Why not Faust's `exactly_once` (used until this design; all measured with the
SIGKILL test): table changelog writes were queued behind the offset commit and
published grouped by source partition (restored state behind the committed
offsets), recovery read changelog highwaters from an empty fetch cache, a
restarted worker's transactional producer was once fenced and the worker stayed
up committing nothing, and a one-frame state lag after SIGKILL remained
unexplained (at_least_once asks the broker for changelog highwaters itself). Kafka transactions also cost a producer per partition, control
records and read_committed lag; the derived topics were never in them anyway
(Faust gives no transactional id to topics its consumer does not read).

Wall-clock liveness (a device gone silent, a session that never ended) cannot
update a table from a timer, so a timer publishes tick records to the tick topic
and the agent handles them like any other input: replayable and ordered.

Every private part of Faust and aiokafka this relies on is in `faust_internals.py`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import faust
from prometheus_client import Counter, Gauge, Histogram

from ingest import wire
from mimetic import kafka_admin
from mimetic import topics as T
from mimetic.config import Settings
from mimetic.kafka_security import faust_credentials
from processors import records as R
from processors.worker.cursors import Admit, InputCursors
from processors.worker.health import WorkerHealth
from processors.worker.device import DeviceProcessor, WorkerParams, state_revision
from processors.worker.faust_internals import (WorkerApp, hold_reference, install_consumer_patches,
                                               never_commit, release, save_to_changelog)

log = logging.getLogger("mimetic.worker")

CAUGHT_UP_FRAMES = 50  # a partition this close to its end counts as live for wall-clock checks
TICK_FRESH_FACTOR = 1.5  # a tick made this many tick intervals after the last batch received is stale


FRAMES_IN = Counter("mimetic_worker_frames_total", "frames consumed")
RECORDS_OUT = Counter("mimetic_worker_records_total", "derived records produced", ["kind"])
DEAD = Counter("mimetic_worker_dead_letters_total", "records sent to the dead-letter topic", ["reason"])
REPLAYED = Counter("mimetic_worker_replayed_total",
                   "redelivered records skipped because the device state already holds them")
BATCHES = Histogram("mimetic_worker_batch_records", "input records per processed batch",
                    buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000))
LATENCY = Histogram("mimetic_worker_ingest_to_output_seconds", "gateway receive -> derived record produced",
                    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
DROPPED = Counter("mimetic_worker_dropped_total",
                  "input records dropped unacknowledged: past a hole in their partition, or of a partition "
                  "this worker does not own (they are consumed again by their owner)", ["why"])
SEEKS = Counter("mimetic_worker_seeks_total", "seeks back to an input partition's next unapplied offset")
CHECKPOINTS = Counter("mimetic_worker_checkpoints_total",
                      "device states saved to the changelog and their input records acknowledged")
DEVICES = Gauge("mimetic_worker_devices", "devices with state in this worker's memory")


def _received_at_us(meta: wire.RecordMeta) -> int:
    """The receive time the device-clock rule compares with: the gateway's header, or (a producer that
    sets none) this worker's clock."""
    return meta.received_at_us if meta.received_at_us is not None else wire.now_us()


def _check_key(key: str, device_id: str) -> None:
    """A record applies to the state of its key's device only if it says it is that device's."""
    if device_id != key:
        raise wire.WireError("device_id_mismatch", f"key {key!r}, record {device_id!r}", 422)


@dataclass
class Outgoing:
    """What one batch produces: messages to deliver, and the devices whose states it changed."""

    messages: list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]] = field(default_factory=list)
    states: list[tuple[DeviceProcessor, int]] = field(default_factory=list)
    frames: int = 0  # frames applied (counted once the device's attempt succeeds)
    latencies_s: list[float] = field(default_factory=list)  # gateway receive -> applied, per frame

    def take(self, other: "Outgoing") -> None:
        """Adopt a successful per-device attempt's outputs."""
        self.messages += other.messages
        self.frames += other.frames
        self.latencies_s += other.latencies_s


@dataclass
class Held:
    """Applied and delivered since the last checkpoint, not yet saved or acknowledged."""

    events: list = field(default_factory=list)  # every admitted input record (incref'd: not acked yet)
    by_device: dict[str, list] = field(default_factory=dict)  # device -> its records among them
    devices: dict[str, tuple[DeviceProcessor, int]] = field(default_factory=dict)  # device -> (state, partition)
    since_s: float | None = None  # monotonic time of the oldest held record

    def due(self, interval_s: float) -> bool:
        return self.since_s is not None and time.monotonic() - self.since_s >= interval_s


def make_app(s: Settings) -> faust.App:
    params = WorkerParams.from_settings(s)
    install_consumer_patches()
    app = WorkerApp(
        s.worker_id,
        broker=";".join(f"kafka://{addr}" for addr in s.bootstrap_servers()),
        broker_credentials=faust_credentials(s),   # SASL_SSL / mutual TLS: mimetic.kafka_security
        store="memory://",
        # Faust's own files (by default it writes to the current directory); Faust makes only the last level
        datadir=str(s.private_dir("run", "faust")),
        # effectively-once comes from the batch protocol in the module docstring; at_least_once
        # flushes the producer (outputs and states) before every offset commit
        processing_guarantee="at_least_once",
        topic_partitions=s.topic_partitions,
        topic_replication_factor=s.replication_factor(),
        web_host="127.0.0.1",
        web_bind="127.0.0.1",  # loopback only (Faust binds 0.0.0.0 by default)
        web_port=s.worker_web_port,
        web_in_thread=False,
        broker_commit_interval=s.worker_commit_interval_s,
        consumer_auto_offset_reset="earliest",
        table_cleanup_interval=60.0,
        # a revoked partition's batch in progress finishes and commits before the partition moves
        stream_wait_empty=True,
        producer_linger_ms=5,
        # aiokafka retries some requests against the leader its metadata names without refreshing it
        # (an offset reset after a leader change held a partition for 77 s in the sink's case, whose
        # default refresh was 5 min): the worker refreshes every 10 s, as the sink does
        consumer_metadata_max_age_ms=10_000,
        producer_metadata_max_age_ms=10_000,
        producer_max_request_size=4 * 1024 * 1024,
        producer_acks=-1,
        logging_config=None,
        # a killed worker's partitions move on after this long (Faust's default is 60 s)
        broker_session_timeout=s.worker_group_timeout_s,
        broker_heartbeat_interval=min(3.0, s.worker_group_timeout_s / 3),
        # the check compares a RocksDB persisted offset with the changelog's highwater; with the
        # memory store it crashed a healthy worker during a rebalance (measured: "persisted offset
        # 666 > highwater -1" right after a SIGKILLed peer)
        recovery_consistency_check=False,
    )
    app.mimetic_fetch_limits = (s.worker_fetch_min_bytes, s.worker_fetch_max_wait_ms)
    raw = dict(key_serializer="raw", value_serializer="raw")
    frames_topic, telemetry_topic, events_topic, ticks_topic = (
        T.RAW_FRAMES.name(s), T.TELEMETRY.name(s), T.SESSION_EVENTS.name(s), T.WORKER_TICKS.name(s))
    source = app.topic(frames_topic, telemetry_topic, events_topic, ticks_topic, **raw)
    ticks = app.topic(ticks_topic, partitions=s.topic_partitions, **raw)
    out_topic = {kind: f"{s.topic_prefix}.{suffix}" for kind, suffix in R.TOPIC_OF_KIND.items()}
    dead_topic = T.DEAD_LETTERS.name(s)
    kind_of_topic = {topic: kind for kind, topic in out_topic.items()}
    state = app.Table("device-state", default=None, partitions=s.topic_partitions, key_type=bytes,
                      value_type=bytes)
    #: the key under which a state remembers the last offset it applied from each input topic
    code_of = {frames_topic: "f", telemetry_topic: "t", events_topic: "e", ticks_topic: "k"}

    cache: OrderedDict[str, DeviceProcessor] = OrderedDict()  # live objects, newest revision
    cursors = InputCursors()
    held = Held()
    batch_lock = asyncio.Lock()  # a checkpoint never saves a state whose batch is still being delivered
    sought: dict = {}  # partition -> (offset, monotonic time) of the last seek back
    last_frame_offset: dict[int, int] = {}
    #: per partition, the newest gateway receive time among the frames processed (s): the stream's clock
    frames_clock_s: dict[int, float] = {}

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
        log.info("restored %s from the table at revision %d (next seq %s) applied %s", device_id, dp.rev,
                 dp.seq.next_seq, dp.applied)
        return dp

    def remember(dp: DeviceProcessor) -> None:
        cache[dp.device_id] = dp
        cache.move_to_end(dp.device_id)
        while len(cache) > 20_000:
            oldest = next(iter(cache))
            if oldest in held.devices:  # unsaved effects live only in this object: keep it till the checkpoint
                break
            del cache[oldest]
        DEVICES.set(len(cache))

    def dead_letter(ev, reason: str, detail: str) -> tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]:
        headers = [("reason", reason.encode()), ("detail", detail[:500].encode()),
                   ("source-topic", ev.message.topic.encode()),
                   ("source-partition", str(ev.message.partition).encode()),
                   ("source-offset", str(ev.message.offset).encode()), ("stage", b"worker")]
        return dead_topic, ev.key, ev.value or b"", headers

    def apply(dp: DeviceProcessor, ev, key: str, out: Outgoing) -> None:
        """One input record's effect on the device state, its derived records into `out`."""
        topic = ev.message.topic
        try:
            if topic == frames_topic:
                frame, meta = wire.decode_frame_record(ev.value, ev.message.headers)
                _check_key(key, frame.device_id)
                last_frame_offset[ev.message.partition] = ev.message.offset
                recs, late = dp.on_frame(frame, ev.value, _received_at_us(meta))
                dp.last_arrival_s = (meta.received_at_us or 0) / 1e6 or dp.last_arrival_s
                if dp.last_arrival_s is not None:
                    p = ev.message.partition
                    frames_clock_s[p] = max(frames_clock_s.get(p, 0.0), dp.last_arrival_s)
                out.frames += 1
                if meta.received_at_us:
                    out.latencies_s.append(max(0.0, time.time() - meta.received_at_us / 1e6))
                for why in late:
                    out.messages.append(dead_letter(ev, "late", why))
            elif topic == telemetry_topic:
                t, meta = wire.decode_telemetry_record(ev.value, ev.message.headers)
                _check_key(key, t.device_id)
                recs = dp.on_telemetry(t, _received_at_us(meta))
            elif topic == events_topic:
                e, meta = wire.decode_event_record(ev.value, ev.message.headers)
                _check_key(key, e.device_id)
                recs = dp.on_event(e, _received_at_us(meta))
            else:  # tick
                text = ev.value.decode()
                now_s, stale = float(text.split(":")[0]), text.endswith(":stale")
                # wall-clock silence only means something when this partition's frames are caught up; while a
                # few still wait, time is the stream's (the newest receive time processed here), so a worker
                # running behind its devices does not take its own delay for their silence
                lag = _frames_lag(ev.message.partition)
                stream_now_s = now_s if lag == 0 else min(now_s, frames_clock_s.get(ev.message.partition, now_s))
                recs = dp.on_tick(stream_now_s, dp.last_arrival_s) if lag <= CAUGHT_UP_FRAMES and not stale else []
                stats = dp.stream_stats(now_s)
                if stats is not None:
                    recs.append(stats)
        except wire.WireError as exc:
            out.messages.append(dead_letter(ev, exc.reason, str(exc)))
            return
        key_b = key.encode()
        for rec in recs:
            kind = R.kind_of(rec)
            out.messages.append((out_topic[kind], key_b, R.encode(rec), R.headers_for(rec)))

    def run_device(key: str, evs: list, out: Outgoing) -> None:
        """Apply one device's records of a batch, in offset order.

        A record that raises (a bug or a poison record the decoder let through) is dead-lettered;
        the device restarts from its saved state and the records applied since (held since the last
        checkpoint, then this batch's) are applied again without it, so a half-applied record never
        reaches the state. Outputs of the held records go out again; the sink stores them once.
        """
        poison: dict[tuple[str, int, int], str] = {}
        todo = evs
        while True:
            dp = load(key)
            mine = Outgoing()
            changed = False
            ev = None
            try:
                for ev in todo:
                    code, offset = code_of[ev.message.topic], ev.message.offset
                    if offset <= dp.applied.get(code, -1):
                        REPLAYED.inc()
                        continue
                    rid = (ev.message.topic, ev.message.partition, offset)
                    if rid in poison:
                        mine.messages.append(dead_letter(ev, "processing_error", poison[rid]))
                    else:
                        apply(dp, ev, key, mine)
                    dp.applied[code] = offset
                    changed = True
            except Exception as exc:
                rid = None if ev is None else (ev.message.topic, ev.message.partition, ev.message.offset)
                if rid is None or rid in poison:  # not a record's fault: let Faust's supervisor see it
                    raise
                log.exception("processing failed for a %s record of %s", ev.message.topic, key)
                poison[rid] = f"{type(exc).__name__}: {exc}"
                cache.pop(key, None)  # the object is half-updated: start again from the saved state
                todo = held.by_device.get(key, []) + evs
                continue
            out.take(mine)
            if changed:
                remember(dp)
                out.states.append((dp, evs[0].message.partition))
            return

    async def deliver(out: Outgoing) -> None:
        """Derived records and dead letters, delivery awaited (before any state that accounts for them)."""
        producer = app.producer
        pending = []
        for topic, key, value, headers in out.messages:  # counted here, once: never a discarded attempt
            pending.append(await producer.send(topic, key, value, None, None, headers))
            if topic == dead_topic:
                DEAD.labels(headers[0][1].decode()).inc()
            else:
                RECORDS_OUT.labels(kind_of_topic[topic]).inc()
        FRAMES_IN.inc(out.frames)
        for latency_s in out.latencies_s:
            LATENCY.observe(latency_s)
        if pending:
            try:
                await asyncio.gather(*pending)
            except Exception:  # never save a state whose outputs may be missing
                log.exception("derived records could not be delivered: exiting so the batch is processed "
                              "again by a restarted worker (nothing was acknowledged)")
                os._exit(75)

    def hold(events: list, out: Outgoing) -> None:
        """After delivery: keep the batch's records unacknowledged and its states unsaved until the
        next checkpoint (one state save per device per checkpoint instead of per batch)."""
        for ev in events:
            hold_reference(ev.message)  # take_events' ack then leaves it unacknowledged
            held.events.append(ev)
            key = ev.key.decode("utf-8", "replace") if ev.key else ""
            held.by_device.setdefault(key, []).append(ev)
        for dp, partition in out.states:
            held.devices[dp.device_id] = (dp, partition)
        if held.since_s is None and events:
            held.since_s = time.monotonic()

    async def checkpoint() -> None:
        """Save the held devices' states to the changelog, then acknowledge their records: Faust's
        commit flushes the producer before it commits those offsets. Only for partitions this worker
        still owns; the others' records stay unacknowledged (their new owner applies them from the
        committed offset) and their states unsaved (a write from here would race the owner's)."""
        owned = set() if cursors.rebalancing else {tp.partition for tp in cursors.owned}
        producer = app.producer
        unsaved: set[str] = set()
        for key, (dp, partition) in held.devices.items():
            if partition in owned and cache.get(key, dp) is dp:
                await save_to_changelog(state, producer, key.encode(), dp.to_state(), partition)
            else:  # moved away (or replaced by a newer state from the table, which means the same)
                unsaved.add(key)
                if cache.get(key) is dp:
                    del cache[key]  # holds effects no saved state or committed offset accounts for
        for key, evs in held.by_device.items():
            for ev in evs:
                if ev.message.partition in owned and key not in unsaved:
                    release(ev.message, app.consumer)  # the last reference: the offset may now be committed
                else:
                    never_commit(ev.message)  # never counted as done here (see `admitted`)
        if held.events:
            CHECKPOINTS.inc()
        held.events, held.by_device, held.devices, held.since_s = [], {}, {}, None

    @app.on_partitions_revoked.connect
    async def _on_revoked(sender, revoked, **kwargs) -> None:
        cursors.revoke()

    @app.on_partitions_assigned.connect
    async def _on_assigned(sender, assigned, **kwargs) -> None:
        cursors.assign(tp for tp in assigned if tp.topic in code_of)

    async def start_offsets(tps: set) -> dict:
        """Where newly owned partitions start: the group's committed offset, else the log start."""
        group = app.conf.id
        committed = await asyncio.to_thread(kafka_admin.committed_offsets, s, group, tps)
        missing = [tp for tp in tps if committed.get(tp, -1) < 0]
        if missing:
            committed.update(await app.consumer.earliest_offsets(*missing))
        log.info("starting cursors of newly owned partitions at %s",
                 {f"{t}/{p}": o for (t, p), o in sorted(committed.items())})
        return committed

    async def seek_back(tp, after: int, seen: int) -> None:
        """Ask the consumer for a partition's records again from its cursor (once per hole)."""
        nxt, now = cursors.next_offset[tp], time.monotonic()
        last = sought.get(tp)
        if last is not None and last[0] == nxt and now - last[1] < 2.0:
            return  # already asked; the records in between are on their way
        if last is not None and last[0] == nxt:  # asked before without effect: were they deleted?
            earliest = (await app.consumer.earliest_offsets(tp)).get(tp, 0)
            if earliest > nxt:
                log.error("records %d..%d of %s were deleted by retention before this worker applied them",
                          nxt, earliest - 1, tp)
                cursors.start(tp, earliest)
                nxt = earliest
        log.warning("input offsets of %s/%d jumped from %d to %d: dropped the later records unacknowledged, "
                    "seeking back to %d", tp.topic, tp.partition, after, seen, nxt)
        sought[tp] = (nxt, now)
        SEEKS.inc()
        await app.consumer.seek(tp, nxt)

    async def admitted(events: list) -> list:
        """The batch's records this worker may apply now (see `cursors.py`); the others are dropped
        without an ack, so their offsets are never committed from here."""
        new = cursors.unstarted({ev.message.tp for ev in events})
        if new:
            starts = await start_offsets(new)
            for tp in new:
                first_seen = min(ev.message.offset for ev in events if ev.message.tp == tp)
                cursors.start(tp, starts.get(tp, first_seen))
        keep: list = []
        holes: dict = {}  # partition -> (offset applied last before the first hole, that hole's offset, last hole)
        for ev in events:
            tp, offset = ev.message.tp, ev.message.offset
            verdict = cursors.admit(tp, offset)
            if verdict is Admit.APPLY:
                keep.append(ev)
                continue
            never_commit(ev.message)  # makes take_events' ack a no-op: the offset must not count as done
            DROPPED.labels(verdict.value).inc()
            if verdict is Admit.HOLE:
                after, first, _ = holes.get(tp, (cursors.next_offset[tp] - 1, offset, offset))
                holes[tp] = (after, first, offset)
        for tp, (after, first, last) in holes.items():
            if cursors.next_offset[tp] <= last:  # not filled later in this batch by a redelivery
                await seek_back(tp, after, first)
        return keep

    async def process(events: list) -> None:
        """One batch: admit, apply per device, deliver outputs, hold the records until the checkpoint."""
        events = await admitted(events)
        if not events:
            return
        BATCHES.observe(len(events))
        out = Outgoing()
        by_device: dict[str, list] = {}
        for ev in events:
            key = ev.key.decode("utf-8", "replace") if ev.key else ""
            if not key or ev.message.topic not in code_of:
                out.messages.append(dead_letter(ev, "missing_key", "records must be keyed by device id"))
                continue
            by_device.setdefault(key, []).append(ev)
        for key, evs in by_device.items():
            run_device(key, evs, out)
        await deliver(out)
        hold(events, out)

    @app.agent(source, name="device-pipeline")
    async def device_pipeline(stream):
        # take_events acks a batch when its body ends, however it ends. A completed batch's records
        # hold an extra reference until the checkpoint (`hold`); a batch that does not complete is
        # un-acked (cancelled: the worker is stopping) or the process exits (anything else), so
        # Faust never commits the offsets of records whose states were never saved.
        async for events in stream.take_events(s.worker_batch_max, s.worker_batch_within_s):
            progress["last_event_s"], progress["armed"] = time.monotonic(), True
            try:
                async with batch_lock:
                    await process(events)
                    if app.waiting_empty or held.due(s.worker_checkpoint_interval_s):
                        await checkpoint()
            except Exception:
                log.exception("a batch failed outside any single record: exiting so that nothing of it is "
                              "acknowledged (restart the worker; the batch is consumed again)")
                os._exit(70)
            except BaseException:
                for ev in events:
                    never_commit(ev.message)  # take_events' ack becomes a no-op
                raise

    progress = {"last_event_s": time.monotonic(), "armed": False}  # armed by the first processed batch

    async def checkpoint_now() -> None:
        """Checkpoint what is held (after the batch in progress, if any)."""
        async with batch_lock:
            if held.events:
                await checkpoint()

    app.before_wait_empty = checkpoint_now

    @app.timer(interval=min(0.25, s.worker_checkpoint_interval_s))
    async def checkpoint_timer() -> None:
        """Checkpoint when no batch comes to do it: input went quiet, or a rebalance is waiting for
        every fetched record to be acknowledged (`stream_wait_empty`) before partitions move."""
        if held.events and (held.due(s.worker_checkpoint_interval_s) or app.rebalancing):
            async with batch_lock:
                try:
                    await checkpoint()
                except Exception:
                    log.exception("checkpoint failed: exiting so that nothing unsaved is acknowledged")
                    os._exit(70)

    @app.timer(interval=10.0)
    async def watchdog() -> None:
        """Exit when frames wait but nothing has been processed for a long time.

        A worker stuck for any reason (seen once with Faust's transactional producer fenced)
        otherwise stays up without progress; exiting lets its supervisor restart it and the
        group hand its partitions on.
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
        """Ask every device with state on this worker to check its liveness.

        A tick vouches for the wall clock only while the consumer is receiving (its own ticks at
        least): one made while the broker is unreachable reaches the devices after it returns, and
        would call every device silent whose frames waited out the outage in their producers. Such a
        tick is marked stale and checks nothing."""
        fresh = time.monotonic() - progress["last_event_s"] <= TICK_FRESH_FACTOR * s.worker_tick_interval_s
        now = f"{time.time():.3f}{'' if fresh else ':stale'}".encode()
        assigned = {tp.partition for tp in app.consumer.assignment() if tp.topic == frames_topic}
        for key in list(state.keys()):
            p = T.partition_of(key, s.topic_partitions)
            if p not in assigned:
                continue
            try:
                dp = load(key.decode())
            except Exception:
                continue
            remember(dp)
            if dp.session is not None or dp.closing is not None or dp.stats.any():
                await ticks.send(key=key, value=now, partition=p)

    health = WorkerHealth(s, lambda: app.consumer, cursors, lambda: held.since_s,
                          lambda: progress["last_event_s"] if progress["armed"] else None)

    @app.task
    async def admin_listener() -> None:
        """/livez, /readyz and /metrics on the worker's admin port (`health.py`)."""
        await health.serve()

    return app

"""The database sink: derived topics -> TimescaleDB, idempotent, offsets after the commit.

Loop (one `Sink` per process, or embedded in another asyncio program):

1. ``getmany`` up to ``sink_batch_size`` records, waiting at most ``sink_linger_ms``
   (consumer group ``sink_group``, ``isolation_level="read_committed"`` so aborted
   transactional output of the processors is never stored, auto-commit off).
2. Decode each record (:mod:`processors.records`). Undecodable ones go to the
   dead-letter topic with a ``reason`` header (and the source topic/partition/offset),
   and are counted.
3. Write the decoded batch in ONE database transaction (:class:`DbWriter`: binary COPY
   into staging tables, ``INSERT ... ON CONFLICT DO NOTHING`` on natural keys).
4. Only after the database commit (and the dead-letter sends are acknowledged) commit
   the Kafka offsets of the batch.

Database down: every partition is paused (nothing more is fetched), the SAME batch is
retried with exponential back-off up to ``sink_retry_max_s``, and the consumer keeps
polling (paused, so it returns nothing) to stay in its group. Nothing is dropped and no
offset is committed until the batch is in the database. A crash at any point replays
from the last committed offset; the natural keys make the replay write no duplicate.

A batch rejected for its *data* (a value its column type cannot hold, such as a seq of
2**63, a constraint or value error: :class:`RecordRejected`) is bisected
(:mod:`processors.storage.isolate`): halves are written until each rejected record
stands alone, at most 2 * log2(n) + 1 extra writes for one bad record among n. The good
records are stored, each bad one is dead-lettered with its reason and source
topic/partition/offset, and the sink goes on: no record can stop it. An outage is
never a record's fault: it is retried as above, and nothing is dead-lettered for it.
A dead letter Kafka does not acknowledge is resent (with back-off) before the
offsets move on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError, MessageSizeTooLargeError
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from mimetic import topics
from mimetic.admin_listener import KafkaProbe, Readiness, admin_app, db_reachable, start_admin
from mimetic.config import Settings
from mimetic.kafka_security import client_kwargs
from processors import records as r
from processors.storage.isolate import isolate_rejected
from processors.storage.writer import DbWriter, RecordRejected, RowEncodingError, TransientDbError, WriteResult

log = logging.getLogger("mimetic.sink")

SINK_TOPICS: tuple[topics.TopicSpec, ...] = (
    topics.FEATURES, topics.BALANCE, topics.ACTIVATIONS, topics.SESSIONS, topics.ALERTS,
    topics.DERIVED_TELEMETRY,
)


class SinkMetrics:
    """Prometheus metrics of one sink (own registry, so several sinks can live in one process)."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        reg = self.registry
        self.rows = Counter("mimetic_sink_rows_written_total", "Rows inserted, per table", ["table"], registry=reg)
        self.duplicates = Counter("mimetic_sink_duplicate_rows_total",
                                  "Rows skipped because their natural key was already stored", ["table"],
                                  registry=reg)
        self.records = Counter("mimetic_sink_records_total", "Kafka records consumed", ["kind"], registry=reg)
        self.batches = Counter("mimetic_sink_batches_total", "Batches committed to the database", registry=reg)
        self.retries = Counter("mimetic_sink_db_retries_total", "Batch write retries after a database error",
                               registry=reg)
        self.dead_letters = Counter("mimetic_sink_dead_letters_total", "Records sent to the dead-letter topic",
                                    ["reason"], registry=reg)
        self.isolation_writes = Counter("mimetic_sink_isolation_writes_total",
                                        "Sub-batch writes while isolating the records of a rejected batch",
                                        registry=reg)
        self.dead_letter_retries = Counter("mimetic_sink_dead_letter_retries_total",
                                           "Dead-letter sends retried after a Kafka error", registry=reg)
        self.lag = Gauge("mimetic_sink_lag_records", "Records behind the end of each partition",
                         ["topic", "partition"], registry=reg)
        self.sessions_refreshed = Counter("mimetic_sink_sessions_refreshed_total",
                                          "Finished sessions whose in-database analysis was recomputed",
                                          registry=reg)
        self.db_up = Gauge("mimetic_sink_db_up", "1 while the last database write succeeded", registry=reg)
        self.batch_seconds = Histogram("mimetic_sink_batch_write_seconds", "Database time per batch",
                                       registry=reg, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))

    def value(self, name: str, **labels) -> float:
        v = self.registry.get_sample_value(name, labels or None)
        return 0.0 if v is None else v


class SinkStopped(Exception):
    """stop() was called while a batch could not be written: it is left uncommitted (replayed later)."""


@dataclass
class _Decoded:
    msg: ConsumerRecord
    record: r.Record


@dataclass(frozen=True)
class _DeadLetter:
    msg: ConsumerRecord
    reason: str
    drop_value: bool = False    # too large for the dead-letter topic with its headers


class Sink:
    """Consume the derived topics and write them to the database. `await run()`; `stop()`."""

    def __init__(self, settings: Settings, dsn: str | None = None, metrics: SinkMetrics | None = None,
                 topic_specs: Sequence[topics.TopicSpec] = SINK_TOPICS, client_id: str = "mimetic-sink"):
        self.s = settings
        self.dsn = dsn or _sink_dsn(settings)
        self.metrics = metrics or SinkMetrics()
        self.topic_names = [t.name(settings) for t in topic_specs]
        self.dead_topic = topics.DEAD_LETTERS.name(settings)
        self.client_id = client_id
        self.writer = DbWriter(self.dsn)
        self._stop = asyncio.Event()
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.started = asyncio.Event()
        self._paused = False
        self._last_refresh = 0.0

    def stop(self) -> None:
        self._stop.set()

    # -- main loop -------------------------------------------------------------------
    async def run(self) -> None:
        self.consumer = AIOKafkaConsumer(
            *self.topic_names,
            bootstrap_servers=self.s.bootstrap_servers(),
            group_id=self.s.sink_group,
            client_id=self.client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_poll_interval_ms=300_000,
            # aiokafka 0.14 retries an offset reset (a partition without a commit) against the leader
            # its metadata names without refreshing it on NotLeaderForPartition; a broker that came
            # back stale then holds the partition until the next refresh (default 5 min, measured)
            metadata_max_age_ms=10_000,
            **client_kwargs(self.s),
        )
        self.producer = AIOKafkaProducer(bootstrap_servers=self.s.bootstrap_servers(), acks="all",
                                         enable_idempotence=True, client_id=f"{self.client_id}-dlq",
                                         **client_kwargs(self.s))
        await self.producer.start()
        await self.consumer.start()
        self.started.set()
        try:
            while not self._stop.is_set():
                msgs = await self._fetch()
                if msgs:
                    await self._process(msgs)
                await self._maybe_refresh()
        except SinkStopped:
            log.warning("stopped while the database was unavailable; the pending batch was not committed "
                        "and will be replayed")
        finally:
            with contextlib.suppress(Exception):
                await self.consumer.stop()
            with contextlib.suppress(Exception):
                await self.producer.stop()
            await asyncio.to_thread(self.writer.close)

    async def _maybe_refresh(self) -> None:
        """Recompute finished sessions whose envelopes/task windows/summary changed (0006)."""
        interval = self.s.sink_refresh_interval_s
        now = time.monotonic()
        if interval <= 0 or now - self._last_refresh < interval:
            return
        self._last_refresh = now
        try:
            n = await asyncio.to_thread(self.writer.refresh_sessions, min(2.0, interval))
            if n:
                self.metrics.sessions_refreshed.inc(n)
        except (TransientDbError, RecordRejected) as exc:
            log.warning("session refresh failed (%s); will retry", exc)

    async def _fetch(self) -> list[ConsumerRecord]:
        assert self.consumer is not None
        msgs: list[ConsumerRecord] = []
        linger = self.s.sink_linger_ms / 1000
        deadline: float | None = None
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            wait = linger if deadline is None else max(0.0, deadline - loop.time())
            got = await self.consumer.getmany(timeout_ms=int(wait * 1000),
                                              max_records=self.s.sink_batch_size - len(msgs))
            for recs in got.values():
                msgs.extend(recs)
            if not msgs:
                return msgs
            if deadline is None:
                deadline = loop.time() + linger
            if len(msgs) >= self.s.sink_batch_size or loop.time() >= deadline:
                break
        return msgs

    async def _process(self, msgs: list[ConsumerRecord]) -> None:
        decoded: list[_Decoded] = []
        dead: list[tuple[ConsumerRecord, str]] = []
        for m in msgs:
            try:
                rec = r.decode(m.value)
            except r.DecodeError as exc:
                dead.append((m, f"undecodable: {exc}"))
                continue
            except Exception as exc:  # a value that crashes the decoder is still bad input
                dead.append((m, f"undecodable: {type(exc).__name__}: {exc}"))
                continue
            decoded.append(_Decoded(m, rec))
            self.metrics.records.labels(r.kind_of(rec)).inc()
        if decoded:
            pipeline = {"component": "sink", "instance": f"{self.s.sink_group}/{self.client_id}",
                        "records": len(msgs), "dead_letters": len(dead), "lag": self._lag_after(msgs)}
            dead.extend(await self._write_with_retry(decoded, pipeline))
        if dead:
            await self._dead_letter(dead)
        await self._commit(msgs)

    def _lag_after(self, msgs: list[ConsumerRecord]) -> int | None:
        """Records behind the partition ends once this batch is done (None if unknown)."""
        assert self.consumer is not None
        last: dict[TopicPartition, int] = {}
        for m in msgs:
            tp = TopicPartition(m.topic, m.partition)
            last[tp] = max(last.get(tp, -1), m.offset + 1)
        lag = 0
        for tp, pos in last.items():   # partitions of this batch (others were caught up or idle)
            hw = self.consumer.highwater(tp)
            if hw is not None:
                lag += max(0, hw - pos)
        return lag

    async def _write_with_retry(self, batch: list[_Decoded], pipeline: dict | None = None
                                ) -> list[tuple[ConsumerRecord, str]]:
        """Write until it succeeds; returns records rejected for their data (to dead-letter)."""
        backoff = 0.2
        try:
            while True:
                t0 = time.perf_counter()
                try:
                    result = await asyncio.to_thread(self.writer.write, [d.record for d in batch], pipeline)
                    self.metrics.batch_seconds.observe(time.perf_counter() - t0)
                    self._count(result)
                    self.metrics.db_up.set(1)
                    return []
                except RecordRejected as exc:
                    log.warning("batch of %d rejected (%s): isolating the bad records", len(batch), exc)
                    return await self._isolate(batch, _rejection(exc), pipeline)
                except TransientDbError as exc:
                    self.metrics.db_up.set(0)
                    self.metrics.retries.inc()
                    if self._stop.is_set():
                        raise SinkStopped() from exc
                    log.warning("database unavailable (%s); retrying the same batch in %.1fs", exc, backoff)
                    await self._idle(backoff)
                    backoff = min(self.s.sink_retry_max_s, backoff * 2) * random.uniform(0.8, 1.0)
                except Exception as exc:   # the writer sorts every error; an unknown one is still no exit
                    log.exception("batch of %d failed unexpectedly: isolating the bad records", len(batch))
                    return await self._isolate(batch, f"sink error: {type(exc).__name__}: {exc}", pipeline)
        finally:
            self._resume()

    async def _idle(self, seconds: float) -> None:
        """Wait with every partition paused, polling so this member stays in its group.

        Partitions assigned meanwhile (rebalance) are paused too; should a poll still
        return records, the consumer is sought back to them, so nothing is skipped.
        """
        assert self.consumer is not None
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while (left := end - loop.time()) > 0 and not self._stop.is_set():
            assigned = self.consumer.assignment()
            if assigned:
                self.consumer.pause(*assigned)
                self._paused = True
            try:
                got = await self.consumer.getmany(timeout_ms=int(min(left, 1.0) * 1000), max_records=100)
            except KafkaError:
                await asyncio.sleep(min(left, 1.0))
                continue
            for tp, recs in got.items():
                if recs:
                    self.consumer.seek(tp, recs[0].offset)

    def _resume(self) -> None:
        if self._paused and self.consumer is not None:
            self.consumer.resume(*self.consumer.assignment())
            self._paused = False

    async def _isolate(self, batch: list[_Decoded], reason: str, pipeline: dict | None
                       ) -> list[tuple[ConsumerRecord, str]]:
        """Store the records of a rejected batch that can be stored; return the others.

        The batch's `pipeline_stats` row (which the rejected write rolled back) is
        written afterwards, with the rows of every part and the dead letters.
        """
        written = WriteResult()

        async def write(subset: Sequence[_Decoded]) -> str | None:
            self.metrics.isolation_writes.inc()
            got = await self._write_subset([d.record for d in subset])
            if isinstance(got, str):
                return got
            for table, staged in got.staged.items():
                written.add(table, staged, got.inserted.get(table, 0))
            return None

        try:
            bad = await isolate_rejected(batch, write, reason)
            if pipeline is not None:
                rows = sum(written.inserted.values())
                await self._write_subset([], {**pipeline, "dead_letters": pipeline.get("dead_letters", 0) + len(bad),
                                              "rows_written": rows,
                                              "duplicates": sum(written.staged.values()) - rows})
        finally:
            self._resume()
        return [(d.msg, why) for d, why in bad]

    async def _write_subset(self, recs: list[r.Record], pipeline: dict | None = None) -> WriteResult | str:
        """Write a part of a rejected batch: its result once stored, else why it was rejected.

        An outage meanwhile is waited out (paused, polling) like any other: it never
        makes a record look bad.
        """
        while True:
            try:
                result = await asyncio.to_thread(self.writer.write, recs, pipeline)
            except RecordRejected as exc:
                return _rejection(exc)
            except TransientDbError as exc:
                self.metrics.db_up.set(0)
                self.metrics.retries.inc()
                if self._stop.is_set():
                    raise SinkStopped() from exc
                await self._idle(1.0)
                continue
            except Exception as exc:
                log.exception("writing %d records failed unexpectedly", len(recs))
                return f"sink error: {type(exc).__name__}: {exc}"
            self._count(result)
            self.metrics.db_up.set(1)
            return result

    def _count(self, result) -> None:
        self.metrics.batches.inc()
        for table, staged in result.staged.items():
            inserted = result.inserted.get(table, 0)
            self.metrics.rows.labels(table).inc(inserted)
            if staged > inserted:
                self.metrics.duplicates.labels(table).inc(staged - inserted)

    async def _dead_letter(self, dead: list[tuple[ConsumerRecord, str]]) -> None:
        """Send the dead letters; return once Kafka acknowledged all of them.

        A send Kafka refuses is resent after a back-off (a dead letter may then appear
        twice; none is lost). A record too large for the dead-letter topic with its
        headers goes without its value (header ``value_dropped``: its size).
        """
        pending = [_DeadLetter(m, reason) for m, reason in dead]
        backoff = 0.2
        while pending:
            try:
                futures = [await self._send_dead(d) for d in pending]
                results = await asyncio.gather(*futures, return_exceptions=True)
            except KafkaError as exc:
                results = [exc] * len(pending)
            failed: list[_DeadLetter] = []
            for d, res in zip(pending, results):
                if isinstance(res, MessageSizeTooLargeError) and not d.drop_value:
                    failed.append(_DeadLetter(d.msg, d.reason, drop_value=True))
                elif isinstance(res, KafkaError):
                    failed.append(d)
                elif isinstance(res, BaseException):
                    raise res
            if failed:
                self.metrics.dead_letter_retries.inc(len(failed))
                if self._stop.is_set():
                    raise SinkStopped()
                log.warning("%d dead-letter sends failed (%s); resending in %.1fs", len(failed),
                            next(r for r in results if isinstance(r, BaseException)), backoff)
                await self._idle(backoff)
                self._resume()
                backoff = min(self.s.sink_retry_max_s, backoff * 2)
            pending = failed
        for _, reason in dead:
            self.metrics.dead_letters.labels(reason.split(":", 1)[0]).inc()

    async def _send_dead(self, d: _DeadLetter) -> asyncio.Future:
        assert self.producer is not None
        m = d.msg
        headers = [
            ("reason", d.reason.encode()[:1000]),
            ("stage", b"sink"),
            ("source_topic", m.topic.encode()),
            ("source_partition", str(m.partition).encode()),
            ("source_offset", str(m.offset).encode()),
        ]
        if not d.drop_value:
            try:
                return await self.producer.send(self.dead_topic, value=m.value, key=m.key, headers=headers)
            except MessageSizeTooLargeError:
                pass
        log.warning("dead letter of %s[%d]@%d too large: sent without its value", m.topic, m.partition, m.offset)
        headers.append(("value_dropped", str(len(m.value or b"")).encode()))
        return await self.producer.send(self.dead_topic, value=b"", key=m.key, headers=headers)

    async def _commit(self, msgs: list[ConsumerRecord]) -> None:
        assert self.consumer is not None
        offsets: dict[TopicPartition, int] = {}
        for m in msgs:
            tp = TopicPartition(m.topic, m.partition)
            offsets[tp] = max(offsets.get(tp, -1), m.offset + 1)
        assigned = self.consumer.assignment()
        offsets = {tp: o for tp, o in offsets.items() if tp in assigned}
        if offsets:
            try:
                await self.consumer.commit(offsets)
            except (CommitFailedError, KafkaError) as exc:
                # rebalanced away: the new owner replays from the last commit; the writes are idempotent
                log.warning("offset commit failed (%s); the batch will be replayed idempotently", exc)
        for tp in assigned:
            hw = self.consumer.highwater(tp)
            pos = offsets.get(tp)
            if hw is not None and pos is not None:
                self.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(0, hw - pos))


def _rejection(exc: RecordRejected) -> str:
    """The dead-letter reason of a rejected write (its prefix is the metric's label)."""
    kind = "unencodable" if isinstance(exc, RowEncodingError) else "rejected by database"
    return f"{kind}: {exc}"


def _sink_dsn(s: Settings) -> str:
    from processors.storage.roles import sink_dsn

    return sink_dsn(s)


async def run_sink(settings: Settings, stop_on_signals: bool = True) -> None:
    """Run the sink until SIGINT/SIGTERM (standalone entry point: `mimetic sink`), with its admin
    listener on ``sink_admin_host:sink_admin_port`` (0: none)."""
    import signal

    sink = Sink(settings)
    admin = None
    probe = KafkaProbe(settings.bootstrap_servers(), client_id="mimetic-sink-admin",
                       security=client_kwargs(settings))
    if settings.sink_admin_port:
        admin = await start_admin(admin_app(lambda: sink_readiness(sink, probe), sink.metrics.registry),
                                  settings.sink_admin_host, settings.sink_admin_port, "sink")
    if stop_on_signals:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, sink.stop)
    try:
        await sink.run()
    finally:
        if admin is not None:
            await admin.cleanup()
        await probe.close()


async def sink_readiness(sink: Sink, probe: KafkaProbe) -> Readiness:
    """Ready: consuming, Kafka answering, and the sink's database login able to connect."""
    kafka_ok, db_ok = await asyncio.gather(probe.reachable(), db_reachable(sink.dsn))
    assigned = len(sink.consumer.assignment()) if sink.consumer is not None and sink.started.is_set() else 0
    return Readiness({"started": sink.started.is_set(), "kafka": kafka_ok, "db": db_ok},
                     {"partitions": assigned, "paused": sink._paused})


def main() -> None:  # python -m processors.sink
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    from mimetic.config import Settings as _S

    asyncio.run(run_sink(_S()))


if __name__ == "__main__":
    main()

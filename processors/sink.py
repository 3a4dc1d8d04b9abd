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

A batch the database rejects for its *data* (a constraint or value error) is split:
each record is written alone and the ones still rejected are dead-lettered with the
database's reason, so one poison record cannot stop the pipeline.
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
from aiokafka.errors import CommitFailedError, KafkaError
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from mimetic import topics
from mimetic.config import Settings
from processors import records as r
from processors.storage.writer import DbWriter, RecordRejected, TransientDbError

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
            bootstrap_servers=self.s.kafka_bootstrap,
            group_id=self.s.sink_group,
            client_id=self.client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_poll_interval_ms=300_000,
        )
        self.producer = AIOKafkaProducer(bootstrap_servers=self.s.kafka_bootstrap, acks="all",
                                         enable_idempotence=True, client_id=f"{self.client_id}-dlq")
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
                    log.warning("batch rejected by the database (%s): isolating records", exc)
                    return await self._write_one_by_one(batch)
                except TransientDbError as exc:
                    self.metrics.db_up.set(0)
                    self.metrics.retries.inc()
                    if self._stop.is_set():
                        raise SinkStopped() from exc
                    log.warning("database unavailable (%s); retrying the same batch in %.1fs", exc, backoff)
                    await self._idle(backoff)
                    backoff = min(self.s.sink_retry_max_s, backoff * 2) * random.uniform(0.8, 1.0)
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

    async def _write_one_by_one(self, batch: list[_Decoded]) -> list[tuple[ConsumerRecord, str]]:
        rejected: list[tuple[ConsumerRecord, str]] = []
        try:
            for d in batch:
                while True:
                    try:
                        result = await asyncio.to_thread(self.writer.write, [d.record])
                        self._count(result)
                        break
                    except RecordRejected as exc:
                        rejected.append((d.msg, f"rejected by database: {exc}"))
                        break
                    except TransientDbError as exc:
                        self.metrics.retries.inc()
                        if self._stop.is_set():
                            raise SinkStopped() from exc
                        await self._idle(1.0)
        finally:
            self._resume()
        return rejected

    def _count(self, result) -> None:
        self.metrics.batches.inc()
        for table, staged in result.staged.items():
            inserted = result.inserted.get(table, 0)
            self.metrics.rows.labels(table).inc(inserted)
            if staged > inserted:
                self.metrics.duplicates.labels(table).inc(staged - inserted)

    async def _dead_letter(self, dead: list[tuple[ConsumerRecord, str]]) -> None:
        assert self.producer is not None
        futures = []
        for m, reason in dead:
            headers = [
                ("reason", reason.encode()[:1000]),
                ("stage", b"sink"),
                ("source_topic", m.topic.encode()),
                ("source_partition", str(m.partition).encode()),
                ("source_offset", str(m.offset).encode()),
            ]
            futures.append(await self.producer.send(self.dead_topic, value=m.value, key=m.key, headers=headers))
            self.metrics.dead_letters.labels(reason.split(":", 1)[0]).inc()
        await asyncio.gather(*futures)   # acknowledged before the offsets move on

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


def _sink_dsn(s: Settings) -> str:
    from processors.storage.roles import sink_dsn

    return sink_dsn(s)


async def run_sink(settings: Settings, metrics_port: int | None = None,
                   stop_on_signals: bool = True) -> None:
    """Run the sink until SIGINT/SIGTERM (standalone entry point: `mimetic sink`)."""
    import signal

    sink = Sink(settings)
    port = metrics_port if metrics_port is not None else settings.sink_metrics_port
    if port:
        start_http_server(port, addr="127.0.0.1", registry=sink.metrics.registry)
    if stop_on_signals:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, sink.stop)
    await sink.run()


def main() -> None:  # python -m processors.sink
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    from mimetic.config import Settings as _S

    asyncio.run(run_sink(_S()))


if __name__ == "__main__":
    main()

"""The notifier process: alert records from Kafka -> receivers, with escalation and an API.

Three loops share one database pool:

Intake (:meth:`Notifier._intake_step`), the at-least-once argument in order:
  1. ``getmany`` from the alerts topic (own consumer group, auto-commit off,
     ``read_committed``).
  2. Decode; records that are not alerts are skipped (the sink dead-letters
     undecodable ones from the same topic).
  3. :func:`alerts.queue.enqueue` in ONE transaction: notices and pending deliveries
     are durable (retried with back-off while the database is down; nothing is
     committed meanwhile).
  4. Commit the batch's Kafka offsets. A crash before this replays the batch; the
     notices' primary keys make the replay queue nothing new.

Delivery (:meth:`Notifier._deliver_round`): lease due deliveries, send them (receivers
in parallel, each receiver's in order, stopping at its first failure), record each
success (with an audit row) or schedule the retry with capped exponential back-off.
A crash between a send and its record leaves the lease to expire: the delivery is
sent again with the same ``Idempotency-Key``, which the receiver uses to drop it.

Escalation (:func:`alerts.queue.escalate_due`) every ``notify_tick_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import defaultdict
from datetime import datetime, timedelta, timezone

import aiohttp
import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from psycopg_pool import AsyncConnectionPool

from mimetic import topics
from mimetic.config import Settings
from processors import records as r

from . import queue
from .payload import backoff_s
from .send import SendError, send_email, send_webhook

log = logging.getLogger("mimetic.notify")


class Notifier:
    """`await run()` until `stop()`."""

    def __init__(self, settings: Settings, dsn: str | None = None, api: bool = True):
        self.s = settings
        self.dsn = dsn or notifier_dsn(settings)
        self.api = api
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()   # new deliveries: start a delivery round now
        self.pool: AsyncConnectionPool | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self.http: aiohttp.ClientSession | None = None
        self.started = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        self.pool = AsyncConnectionPool(self.dsn, min_size=1, max_size=4, open=False,
                                        kwargs={"autocommit": True})
        await self.pool.open()
        self.consumer = AIOKafkaConsumer(
            topics.ALERTS.name(self.s), bootstrap_servers=self.s.kafka_bootstrap, group_id=self.s.notify_group,
            client_id="mimetic-notify", enable_auto_commit=False, auto_offset_reset="earliest",
            isolation_level="read_committed")
        await self.consumer.start()
        self.http = aiohttp.ClientSession()
        runner = None
        if self.api:
            from .api import start_api

            runner = await start_api(self.s, self.pool)
        self.started.set()
        log.info("notifier started (group %s, database login %s)", self.s.notify_group,
                 self.s.notify_pg_user or self.s.pg_user)
        tasks = [asyncio.create_task(self._loop(self._intake_step), name="intake"),
                 asyncio.create_task(self._loop(self._deliver_round, self._wake), name="deliver"),
                 asyncio.create_task(self._loop(self._escalate_step, asyncio.Event()), name="escalate")]
        try:
            await self._stop.wait()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if runner is not None:
                await runner.cleanup()
            with contextlib.suppress(Exception):
                await self.consumer.stop()
            await self.http.close()
            await self.pool.close()

    async def _loop(self, step, wake: asyncio.Event | None = None) -> None:
        """Run ``step`` until stopped, then wait for ``wake`` or a tick (no ``wake``: at once);
        a database or Kafka error backs off and retries."""
        delay = 0.5
        while not self._stop.is_set():
            try:
                await step()
                delay = 0.5
            except (psycopg.Error, KafkaError, OSError) as exc:
                log.warning("%s: %s; retrying in %.1fs", step.__name__, exc, delay)
                await asyncio.sleep(delay)
                delay = min(self.s.notify_retry_max_s, delay * 2) * random.uniform(0.8, 1.0)
                continue
            if wake is not None:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(wake.wait(), self.s.notify_tick_s)
                wake.clear()

    # -- intake ---------------------------------------------------------------------
    async def _intake_step(self) -> None:
        assert self.consumer is not None and self.pool is not None
        got = await self.consumer.getmany(timeout_ms=500, max_records=self.s.notify_batch_size)   # 1
        msgs = [m for recs in got.values() for m in recs]
        if not msgs:
            return
        recs: list[r.AlertRecord] = []
        for m in msgs:                                                                           # 2
            try:
                rec = r.decode(m.value)
            except Exception as exc:   # bad input never stops the notifier
                log.warning("skipping undecodable record %s/%d@%d: %s", m.topic, m.partition, m.offset,
                            str(exc)[:200])
                continue
            if isinstance(rec, r.AlertRecord):
                recs.append(rec)
        while True:                                                                              # 3
            try:
                async with self.pool.connection() as conn:
                    new = await queue.enqueue(conn, recs)
                break
            except (psycopg.OperationalError, psycopg.errors.AdminShutdown) as exc:
                if self._stop.is_set():
                    return   # uncommitted: replayed by the next notifier
                log.warning("database unavailable (%s); retrying the batch", exc)
                await asyncio.sleep(1.0)
        offsets: dict[TopicPartition, int] = {}                                                  # 4
        for m in msgs:
            tp = TopicPartition(m.topic, m.partition)
            offsets[tp] = max(offsets.get(tp, -1), m.offset + 1)
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            log.warning("offset commit failed (%s); the batch will be replayed (idempotent)", exc)
        if new:
            self._wake.set()

    # -- delivery ---------------------------------------------------------------------
    async def _deliver_round(self) -> None:
        assert self.pool is not None
        async with self.pool.connection() as conn:
            due = await queue.claim_due(conn, limit=200, lease_s=self.s.notify_lease_s)
        if not due:
            return
        by_receiver: dict[int, list[queue.Due]] = defaultdict(list)
        for d in due:
            by_receiver[d.receiver_id].append(d)
        await asyncio.gather(*(self._deliver_to(ds) for ds in by_receiver.values()))
        if len(due) == 200:
            self._wake.set()   # more may be due

    async def _deliver_to(self, ds: list[queue.Due]) -> None:
        """One receiver's deliveries in order; at its first failure the rest wait with it."""
        assert self.pool is not None
        for i, d in enumerate(ds):
            try:
                detail = await self._send(d)
            except SendError as exc:
                wait = backoff_s(d.attempts + 1, self.s.notify_retry_base_s, self.s.notify_retry_max_s)
                at = datetime.now(timezone.utc) + timedelta(seconds=wait)
                log.info("delivery %s:%s to %s failed (%s); retry in %.0fs", d.alert_id, d.state, d.receiver,
                         exc, wait)
                async with self.pool.connection() as conn:
                    await queue.record_failure(conn, d, str(exc), at)
                    await queue.release(conn, ds[i + 1:], at)
                return
            async with self.pool.connection() as conn:
                await queue.record_delivered(conn, d, detail)

    async def _send(self, d: queue.Due) -> str:
        if d.kind == "webhook":
            assert self.http is not None
            return await send_webhook(self.http, self.s, d)
        return await send_email(self.s, d)

    # -- escalation -------------------------------------------------------------------
    async def _escalate_step(self) -> None:
        assert self.pool is not None
        async with self.pool.connection() as conn:
            n = await queue.escalate_due(conn, self.s.notify_escalate_after_s)
        if n:
            log.info("escalated %d alert(s)", n)
            self._wake.set()


def notifier_dsn(s: Settings) -> str:
    if s.notify_pg_user:
        from processors.storage.roles import login_dsn

        return login_dsn(s, s.notify_pg_user)
    return s.db_dsn()


async def run_notifier(settings: Settings) -> None:
    """Run until SIGINT/SIGTERM (`mimetic notify`)."""
    import signal

    n = Notifier(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, n.stop)
    await n.run()

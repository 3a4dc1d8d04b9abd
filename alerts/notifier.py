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

Delivery (:meth:`Notifier._deliver_round`): lease due deliveries, send them (one task
per receiver, each receiver's in order, stopping at its first failure), record each
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
from prometheus_client import Counter, Histogram
from psycopg_pool import AsyncConnectionPool

from mimetic import topics
from mimetic.admin_listener import CHECK_TIMEOUT_S, KafkaProbe, Readiness, admin_app, start_admin
from mimetic.config import Settings
from mimetic.kafka_security import client_kwargs, describe
from processors import records as r

from . import queue
from .payload import backoff_s
from .send import SendError, send_email, send_webhook

log = logging.getLogger("mimetic.notify")

ALERTS_IN = Counter("mimetic_notify_alert_records_total", "Alert records taken from Kafka and queued")
DELIVERIES = Counter("mimetic_notify_deliveries_total", "Notification sends by result (sent, failed)", ["result"])
#: from the alert's transition (the record's `time`: the raise or the clear, on the device clock,
#: which the gateway keeps within MIMETIC_CLOCK_MAX_FUTURE_S of its own) to the receiver accepting
#: the notice; per receiver kind, raise/clear, and reason (audience, or escalated: after the wait)
DELIVERY_LATENCY = Histogram(
    "mimetic_notify_delivery_latency_seconds", "Alert transition to notification delivered",
    ["kind", "state", "reason"],
    buckets=(0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 86400.0))


class Notifier:
    """`await run()` until `stop()`."""

    def __init__(self, settings: Settings, dsn: str | None = None, api: bool = True):
        if settings.notify_lease_s <= settings.notify_send_timeout_s:
            raise ValueError("MIMETIC_NOTIFY_LEASE_S must exceed MIMETIC_NOTIFY_SEND_TIMEOUT_S")
        self.s = settings
        self.dsn = dsn or notifier_dsn(settings)
        self.api = api
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()   # new deliveries: start a delivery round now
        self._busy: dict[int, asyncio.Task] = {}   # receiver id -> its sending task
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
            topics.ALERTS.name(self.s), bootstrap_servers=self.s.bootstrap_servers(), group_id=self.s.notify_group,
            client_id="mimetic-notify", enable_auto_commit=False, auto_offset_reset="earliest",
            isolation_level="read_committed", **client_kwargs(self.s))
        await self.consumer.start()
        self.http = aiohttp.ClientSession()
        runner = None
        if self.api:
            from .api import start_api

            runner = await start_api(self.s, self.pool)
        self.started.set()
        log.info("notifier started (group %s, database login %s)", self.s.notify_group,
                 self.s.notify_pg_user)
        log.info("notifier reads Kafka over %s", describe(self.s))
        tasks = [asyncio.create_task(self._loop(self._intake_step), name="intake"),
                 asyncio.create_task(self._loop(self._deliver_round, self._wake), name="deliver"),
                 asyncio.create_task(self._loop(self._escalate_step, asyncio.Event()), name="escalate")]
        try:
            await self._stop.wait()
        finally:
            tasks += list(self._busy.values())   # unfinished sends: their leases expire, they go again
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
            except asyncio.CancelledError:
                raise
            except Exception as exc:   # database or Kafka down, or a bug: log, back off, go on
                log.warning("%s: %s: %s; retrying in %.1fs", step.__name__, type(exc).__name__, exc, delay)
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
                new = await self._enqueue(recs)
                break
            except psycopg.OperationalError as exc:
                if self._stop.is_set():
                    return   # uncommitted: replayed by the next notifier
                log.warning("database unavailable (%s); retrying the batch", exc)
                await asyncio.sleep(1.0)
        ALERTS_IN.inc(len(recs))
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

    async def _enqueue(self, recs: list[r.AlertRecord]) -> int:
        """Queue a batch; if the database refuses its data (a NUL byte, say), queue the records one
        by one and skip the ones it still refuses, so one bad record cannot stop the notifier."""
        assert self.pool is not None
        try:
            async with self.pool.connection() as conn:
                return await queue.enqueue(conn, recs)
        except (psycopg.DataError, psycopg.IntegrityError) as exc:
            log.warning("batch refused by the database (%s); queueing record by record", exc)
        new = 0
        for rec in recs:
            try:
                async with self.pool.connection() as conn:
                    new += await queue.enqueue(conn, [rec])
            except (psycopg.DataError, psycopg.IntegrityError) as exc:
                log.warning("skipping alert record %r: refused by the database (%s)", rec.alert_id[:80], exc)
        return new

    # -- delivery ---------------------------------------------------------------------
    async def _deliver_round(self) -> None:
        """Lease what is due for receivers not already being sent to; one task per receiver, so a slow
        receiver delays only its own notifications."""
        assert self.pool is not None
        async with self.pool.connection() as conn:
            due = await queue.claim_due(conn, limit=200, lease_s=self.s.notify_lease_s, busy=list(self._busy))
        by_receiver: dict[int, list[queue.Due]] = defaultdict(list)
        for d in due:
            by_receiver[d.receiver_id].append(d)
        for rid, ds in by_receiver.items():
            task = asyncio.create_task(self._deliver_to(ds), name=f"deliver-{rid}")
            self._busy[rid] = task
            task.add_done_callback(lambda t, rid=rid: self._done(rid, t))

    def _done(self, receiver_id: int, task: asyncio.Task) -> None:
        self._busy.pop(receiver_id, None)
        if not task.cancelled() and task.exception() is not None:   # leased rows go again after the lease
            log.warning("sending to receiver %d stopped: %r", receiver_id, task.exception())
        self._wake.set()   # its other notifications may be due

    async def _deliver_to(self, ds: list[queue.Due]) -> None:
        """One receiver's deliveries in order; at its first failure the rest wait with it. Rows whose
        lease would run out before their send could finish go back unsent (no second sender races)."""
        assert self.pool is not None
        loop = asyncio.get_running_loop()
        lease_end = loop.time() + self.s.notify_lease_s - self.s.notify_send_timeout_s
        for i, d in enumerate(ds):
            if i > 0 and loop.time() > lease_end:
                async with self.pool.connection() as conn:
                    await queue.release(conn, ds[i:], datetime.now(timezone.utc))
                return
            try:
                detail = await self._send(d)
            except SendError as exc:
                DELIVERIES.labels("failed").inc()
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
            DELIVERIES.labels("sent").inc()
            DELIVERY_LATENCY.labels(d.kind, d.state, d.reason).observe(delivery_latency_s(d.payload))

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


def delivery_latency_s(payload: dict, now: datetime | None = None) -> float:
    """Seconds from the alert transition in a notice (`payload["time"]`) to `now` (0 when the
    device clock was ahead)."""
    t = datetime.fromisoformat(payload["time"])
    return max(0.0, ((now or datetime.now(timezone.utc)) - t).total_seconds())


def notifier_dsn(s: Settings) -> str:
    from processors.storage.roles import notifier_dsn as dsn

    return dsn(s)


async def run_notifier(settings: Settings) -> None:
    """Run until SIGINT/SIGTERM (`mimetic notify`), with its admin listener on
    ``notify_admin_host:notify_admin_port`` (0: none)."""
    import signal

    n = Notifier(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, n.stop)
    probe = KafkaProbe(settings.bootstrap_servers(), client_id="mimetic-notify-admin",
                       security=client_kwargs(settings))
    admin = None
    if settings.notify_admin_port:
        admin = await start_admin(admin_app(lambda: notifier_readiness(n, probe)), settings.notify_admin_host,
                                  settings.notify_admin_port, "notifier")
    try:
        await n.run()
    finally:
        if admin is not None:
            await admin.cleanup()
        await probe.close()


async def notifier_readiness(n: Notifier, probe: KafkaProbe) -> Readiness:
    """Ready: started, Kafka answering, and a pooled database connection answering."""

    async def db_ok() -> bool:
        if n.pool is None:
            return False
        try:
            async with n.pool.connection(timeout=CHECK_TIMEOUT_S) as conn:
                await conn.execute("select 1")
            return True
        except Exception:
            return False

    kafka, db = await asyncio.gather(probe.reachable(), db_ok())
    return Readiness({"started": n.started.is_set(), "kafka": kafka, "db": db}, {"sending": len(n._busy)})

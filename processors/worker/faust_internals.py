"""Every private part of faust-streaming and aiokafka the worker relies on, in one place.

Checked against faust-streaming 0.15.3 and aiokafka 0.14.0, both pinned exactly in
pyproject.toml; `tests/pipeline/test_faust_internals.py` checks each part below (names,
signatures, and cheap behaviour) and the installed versions, so an upgrade fails loudly
there rather than quietly in a rebalance.

1. `faust.transport.consumer.Consumer._add_gap(self, tp, offset_from, offset_to)` (async).
   Faust counts every jump in fetched offsets as acknowledged (meant for transaction
   markers and compacted topics). The input topics have neither; a jump here only means
   records fetched after a seek, and counting the skipped offsets as done would commit
   records never applied. Replaced by a no-op (`install_consumer_patches`).
2. `faust.transport.drivers.aiokafka.AIOKafkaConsumerThread._create_worker_consumer(self,
   transport)`, and aiokafka's `AIOKafkaConsumer._fetch_min_bytes` / `_fetch_max_wait_ms`
   (read by `AIOKafkaConsumer.start()` to build its fetcher). Faust passes neither
   `fetch_min_bytes` (aiokafka's default is 1: a fetch returns with the first record) nor a
   short `fetch_max_wait_ms` (it sets 1500). Wrapped to set both from the app's
   `mimetic_fetch_limits` before the consumer starts (`install_consumer_patches`).
3. `faust.App._consumer_wait_empty(self, consumer, logger)` (async): where Faust waits for
   every fetched record to be acknowledged (`stream_wait_empty`, on revocation and on stop).
   `WorkerApp` overrides it to checkpoint first, so the wait ends quickly.
4. Message reference counting: `Message.incref(n=1)`, `Message.ack(consumer, n=1)` (drops a
   reference; the last one tells the consumer the offset may be committed) and the
   `Message.acked` flag (set, it makes every later ack a no-op, so the offset is never
   counted as done by this worker). `take_events` acks each batch when its body ends;
   `hold_reference` keeps an extra reference until the checkpoint (`release`), and records that must
   not commit from here are marked with `never_commit`.
5. A table's store written directly (`Table.data[key] = value`) plus the changelog record
   sent by the app's producer (`Producer.send(topic, key, value, partition, timestamp,
   headers)`), instead of `Table.__setitem__`, which would send a changelog record per
   batch and at a moment Faust chooses (`save_state`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import faust
from faust.transport.consumer import Consumer as FaustConsumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

# Faust's own implementations, kept before `install_consumer_patches` replaces them.
_faust_add_gap = FaustConsumer._add_gap
_faust_worker_consumer = AIOKafkaConsumerThread._create_worker_consumer


async def _no_offset_gaps(self: FaustConsumer, tp: Any, offset_from: int, offset_to: int) -> None:
    """Stands in for `Consumer._add_gap` (part 1): no fetched-offset jump counts as acknowledged."""


def _worker_consumer_with_fetch_limits(self: AIOKafkaConsumerThread, transport: Any) -> Any:
    """Faust's worker consumer with the app's `mimetic_fetch_limits` (part 2):
    (fetch_min_bytes, fetch_max_wait_ms), set before aiokafka builds its fetcher."""
    consumer = _faust_worker_consumer(self, transport)
    limits = getattr(self.app, "mimetic_fetch_limits", None)
    if limits is not None:
        consumer._fetch_min_bytes, consumer._fetch_max_wait_ms = limits
    return consumer


def install_consumer_patches() -> None:
    """Parts 1 and 2, process-wide (idempotent; every worker app wants both)."""
    FaustConsumer._add_gap = _no_offset_gaps
    AIOKafkaConsumerThread._create_worker_consumer = _worker_consumer_with_fetch_limits


class WorkerApp(faust.App):
    """faust.App that knows when Faust waits for every fetched record to be acknowledged
    (part 3; `stream_wait_empty`: when partitions are revoked, and when the worker stops). The
    worker checkpoints at once then, and after every batch until the wait ends (the agent may
    still process records buffered before the flow stopped), so the wait ends quickly and the
    offsets Faust commits next include the records just saved."""

    before_wait_empty: Callable[[], Awaitable[None]] | None = None
    waiting_empty: bool = False

    async def _consumer_wait_empty(self, consumer: Any, logger: Any) -> None:
        self.waiting_empty = True
        try:
            if self.before_wait_empty is not None:
                await self.before_wait_empty()
            await super()._consumer_wait_empty(consumer, logger)
        finally:
            self.waiting_empty = False


def hold_reference(message: Any) -> None:
    """Keep a record unacknowledged past `take_events`' ack of its batch (part 4)."""
    message.incref()


def release(message: Any, consumer: Any) -> None:
    """Drop the reference `hold_reference` took: the last one lets Faust commit the offset (part 4)."""
    message.ack(consumer)


def never_commit(message: Any) -> None:
    """Make every later ack of the record a no-op: its offset never counts as done here (part 4)."""
    message.acked = True


async def save_to_changelog(table: Any, producer: Any, key: bytes, value: bytes, partition: int) -> None:
    """Put a value in the table's store and send its changelog record now (part 5)."""
    table.data[key] = value
    await producer.send(table.changelog_topic.get_topic_name(), key, value, partition, None, None)

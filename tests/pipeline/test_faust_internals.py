"""The private faust-streaming and aiokafka parts the worker relies on (listed in
processors/worker/faust_internals.py) still exist with the signatures and behaviour it
expects, and the installed versions are the pinned ones: an upgrade fails here, loudly.
No broker: objects are built but never started."""

from __future__ import annotations

import asyncio
import inspect
import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import faust
import pytest
from aiokafka import AIOKafkaConsumer
from faust.transport import conductor
from faust.transport.consumer import Consumer as FaustConsumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Producer
from faust.types.tuples import ConsumerMessage

from processors.worker import faust_internals as fi

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def params(fn) -> list[str]:
    return list(inspect.signature(fn).parameters)


def pinned(name: str) -> str:
    deps = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    (pin,) = [d for d in deps if re.match(rf"{re.escape(name)}\s*==", d)]
    return pin.split("==", 1)[1].strip()


@pytest.mark.parametrize("dist", ["faust-streaming", "aiokafka"])
def test_installed_version_is_the_pinned_one(dist: str) -> None:
    assert version(dist) == pinned(dist), f"{dist} changed: re-check processors/worker/faust_internals.py"


def test_add_gap_is_what_the_no_op_replaces() -> None:
    """Part 1: same signature (Faust calls it with positional tp, offset_from, offset_to)."""
    original = fi._faust_add_gap
    assert inspect.iscoroutinefunction(original)
    assert params(original) == ["self", "tp", "offset_from", "offset_to"]
    assert params(fi._no_offset_gaps) == params(original)
    assert "self._add_gap(tp, r_offset + 1, offset)" in inspect.getsource(FaustConsumer)
    assert "_gap[tp]" in inspect.getsource(original)  # it records gaps the commit then counts as done


def test_create_worker_consumer_and_fetch_limit_attributes() -> None:
    """Part 2: Faust builds the worker consumer in `_create_worker_consumer(transport)`; aiokafka
    keeps the fetch limits in `_fetch_min_bytes`/`_fetch_max_wait_ms` and reads them at start."""
    original = fi._faust_worker_consumer
    assert params(original) == ["self", "transport"]
    assert params(fi._worker_consumer_with_fetch_limits) == params(original)
    assert "self._create_worker_consumer(transport)" in inspect.getsource(AIOKafkaConsumerThread._create_consumer)

    async def build() -> AIOKafkaConsumer:
        return AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9", fetch_min_bytes=123, fetch_max_wait_ms=45)

    consumer = asyncio.run(build())
    assert (consumer._fetch_min_bytes, consumer._fetch_max_wait_ms) == (123, 45)
    start = inspect.getsource(AIOKafkaConsumer.start)
    assert "fetch_min_bytes=self._fetch_min_bytes" in start
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in start


def test_patches_install_idempotently() -> None:
    fi.install_consumer_patches()
    fi.install_consumer_patches()
    assert FaustConsumer._add_gap is fi._no_offset_gaps
    assert AIOKafkaConsumerThread._create_worker_consumer is fi._worker_consumer_with_fetch_limits


class RecordingConsumer:
    """Stands in for the object Faust passes around as `consumer` (no broker involved)."""

    def __init__(self, order: list[str] | None = None) -> None:
        self.order = order if order is not None else []
        self.acked: list = []

    async def wait_empty(self) -> None:
        self.order.append("wait_empty")

    def ack(self, message) -> bool:
        self.acked.append(message)
        return True


def test_consumer_wait_empty_override_runs_the_hook_first() -> None:
    """Part 3: Faust awaits `App._consumer_wait_empty(consumer, logger)`, which calls
    `consumer.wait_empty()` when `stream_wait_empty` is set; ours checkpoints before it."""
    assert inspect.iscoroutinefunction(faust.App._consumer_wait_empty)
    assert params(faust.App._consumer_wait_empty) == ["self", "consumer", "logger"]
    assert "await self._consumer_wait_empty(consumer, self.log)" in inspect.getsource(faust.App)
    order: list[str] = []
    app = fi.WorkerApp("faust-internals-test", broker="kafka://127.0.0.1:9", stream_wait_empty=True)

    async def hook() -> None:
        order.append(f"hook waiting={app.waiting_empty}")

    app.before_wait_empty = hook
    asyncio.run(app._consumer_wait_empty(RecordingConsumer(order), app.log))
    assert order == ["hook waiting=True", "wait_empty"]
    assert app.waiting_empty is False


def message(offset: int) -> ConsumerMessage:
    return ConsumerMessage("raw.frames", 0, offset, 0.0, 0, [], b"dev", b"v", None)


def test_reference_counting_holds_and_releases() -> None:
    """Part 4: the conductor increfs each delivered message, the stream's ack drops that
    reference; a held record reaches the consumer's ack only when released."""
    assert "message.incref(" in inspect.getsource(conductor)
    assert params(ConsumerMessage.incref) == ["self", "n"] and params(ConsumerMessage.ack) == ["self", "consumer", "n"]
    assert "if not message.acked" in inspect.getsource(FaustConsumer.ack)
    consumer = RecordingConsumer()
    m = message(7)
    m.incref()  # as the conductor does on delivery
    fi.hold_reference(m)
    assert m.ack(consumer) is False  # take_events' ack at the end of the batch
    assert consumer.acked == [] and m.refcount == 1
    fi.release(m, consumer)
    assert consumer.acked == [m]


def test_never_commit_makes_later_acks_no_ops() -> None:
    consumer = RecordingConsumer()
    m = message(8)
    m.incref()
    fi.never_commit(m)
    assert m.ack(consumer) is False
    assert consumer.acked == []


def test_save_to_changelog_writes_the_store_and_sends_the_record() -> None:
    """Part 5: `Table.data` is the store the table reads; `Producer.send` takes topic, key,
    value, partition, timestamp, headers positionally."""
    assert params(Producer.send)[:7] == ["self", "topic", "key", "value", "partition", "timestamp", "headers"]
    app = fi.WorkerApp("faust-internals-test", broker="kafka://127.0.0.1:9", store="memory://")
    table = app.Table("device-state", default=None, partitions=4, key_type=bytes, value_type=bytes)
    sent: list[tuple] = []

    class RecordingProducer:
        async def send(self, *args) -> None:
            sent.append(args)

    asyncio.run(fi.save_to_changelog(table, RecordingProducer(), b"dev-1", b"state", 2))
    assert table.data[b"dev-1"] == b"state" and table[b"dev-1"] == b"state"
    assert sent == [("faust-internals-test-device-state-changelog", b"dev-1", b"state", 2, None, None)]

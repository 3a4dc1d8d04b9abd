"""The worker's readiness rules (processors/worker/health.py) on its real parts: input cursors and
partition highwaters (given here by a stand-in for the Faust consumer), Kafka probed for real."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import TopicPartition

from mimetic.admin_listener import KafkaProbe
from mimetic.config import Settings
from processors.worker.cursors import InputCursors
from processors.worker.health import CHECKPOINT_AGE, LAG, WorkerHealth


class _Highwaters:
    """What WorkerHealth asks of the Faust consumer: the end offset of a partition."""

    def __init__(self, ends: dict[TopicPartition, int]):
        self.ends = ends

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.ends.get(tp)


def _health(s: Settings, ends: dict, held_since: float | None = None, last_batch: float | None = None):
    cursors = InputCursors()
    return cursors, WorkerHealth(s, lambda: _Highwaters(ends), cursors, lambda: held_since, lambda: last_batch)


def test_lag_stall_and_checkpoint_age() -> None:
    s = Settings(worker_stall_timeout_s=60)
    a, b = TopicPartition("frames", 0), TopicPartition("frames", 1)
    cursors, h = _health(s, {a: 10, b: 7}, held_since=time.monotonic() - 3, last_batch=time.monotonic() - 31)
    assert h.lags() == {} and not h.stalled()  # rebalancing until the first assignment
    cursors.assign([a, b])
    cursors.start(a, 4)
    assert h.lags() == {("frames", 0): 6}  # b has no cursor yet: unknown, not zero
    assert h.stalled()  # records wait and no batch for more than half the stall timeout
    cursors.start(b, 7)
    h.collect()
    assert LAG.labels("frames", "0")._value.get() == 6 and LAG.labels("frames", "1")._value.get() == 0
    assert 2.5 < CHECKPOINT_AGE._value.get() < 10
    for offset in range(4, 10):
        cursors.admit(a, offset)
    assert h.lags() == {("frames", 0): 0, ("frames", 1): 0} and not h.stalled()
    cursors.revoke()
    assert h.lags() == {}


@pytest.mark.stack
def test_readiness_needs_kafka_and_partitions(settings: Settings) -> None:
    async def main() -> None:
        a = TopicPartition("frames", 0)
        cursors, h = _health(settings, {a: 5}, last_batch=time.monotonic())
        probe = KafkaProbe(settings.kafka_bootstrap)
        try:
            r = await h.readiness(probe)
            assert not r.ok and r.checks == {"kafka": True, "assigned": False, "progressing": True}
            cursors.assign([a])
            cursors.start(a, 5)
            assert (await h.readiness(probe)).ok
        finally:
            await probe.close()
        dead = await h.readiness(KafkaProbe("127.0.0.1:1"))
        assert not dead.ok and dead.checks["kafka"] is False

    asyncio.run(main())

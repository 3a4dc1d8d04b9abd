"""The worker's admin listener (``worker_admin_host:worker_admin_port``, see
:mod:`mimetic.admin_listener`), served from the worker's own event loop beside Faust's web server.

``/readyz``: Kafka answers, this worker owns input partitions (not in a rebalance), and it
is not stalled (records wait in an owned partition while no batch was processed for half the
watchdog's ``worker_stall_timeout_s``). The worker uses no database, so its readiness does not
depend on one. ``/metrics``: the worker's counters (frames, records, dead letters, ...) plus,
refreshed at each scrape, the lag of every owned input partition and the checkpoint age.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import Gauge

from mimetic.admin_listener import KafkaProbe, Readiness, admin_app, start_admin
from mimetic.config import Settings
from mimetic.kafka_security import client_kwargs
from processors.worker.cursors import InputCursors

log = logging.getLogger("mimetic.worker")

LAG = Gauge("mimetic_worker_lag_records", "Records in an owned input partition after the next one to apply",
            ["topic", "partition"])
CHECKPOINT_AGE = Gauge("mimetic_worker_checkpoint_age_seconds",
                       "How long the oldest applied record not yet checkpointed has waited (0: none)")
PARTITIONS = Gauge("mimetic_worker_partitions", "Input partitions this worker owns")


@dataclass
class WorkerHealth:
    """What the admin listener reads of a running worker (all owned by `make_app`)."""

    settings: Settings
    consumer: Callable[[], object]  # the Faust consumer (made when the app starts)
    cursors: InputCursors
    held_since_s: Callable[[], float | None]  # monotonic time of the oldest held record
    last_batch_s: Callable[[], float | None]  # monotonic time of the last processed batch (None: none yet)

    def lags(self) -> dict[tuple[str, int], int]:
        """Per owned input partition with a cursor: highwater - next offset to apply."""
        out: dict[tuple[str, int], int] = {}
        if self.cursors.rebalancing:
            return out
        consumer = self.consumer()
        for tp, nxt in list(self.cursors.next_offset.items()):
            if tp not in self.cursors.owned:
                continue
            try:
                hw = consumer.highwater(tp)
            except Exception:
                hw = None
            if hw is not None:
                out[(tp.topic, tp.partition)] = max(0, hw - nxt)
        return out

    def collect(self) -> None:
        LAG.clear()
        for (topic, partition), lag in self.lags().items():
            LAG.labels(topic, str(partition)).set(lag)
        since = self.held_since_s()
        CHECKPOINT_AGE.set(0.0 if since is None else time.monotonic() - since)
        PARTITIONS.set(0 if self.cursors.rebalancing else len(self.cursors.owned))

    def stalled(self) -> bool:
        last = self.last_batch_s()
        if last is None or time.monotonic() - last < self.settings.worker_stall_timeout_s / 2:
            return False
        return any(lag > 0 for lag in self.lags().values())

    async def readiness(self, probe: KafkaProbe) -> Readiness:
        owned = 0 if self.cursors.rebalancing else len(self.cursors.owned)
        kafka = await probe.reachable()
        lags = self.lags()
        return Readiness({"kafka": kafka, "assigned": owned > 0, "progressing": not self.stalled()},
                         {"partitions": owned, "lag": sum(lags.values())})

    async def serve(self) -> None:
        """Run the admin listener until cancelled (the worker stopping)."""
        s = self.settings
        if not s.worker_admin_port:
            return
        probe = KafkaProbe(s.bootstrap_servers(), client_id=f"{s.worker_id}-admin", security=client_kwargs(s))
        runner = await start_admin(admin_app(lambda: self.readiness(probe), collect=self.collect),
                                   s.worker_admin_host, s.worker_admin_port, "worker")
        try:
            await asyncio.Event().wait()
        finally:
            if runner is not None:
                await runner.cleanup()
            await probe.close()

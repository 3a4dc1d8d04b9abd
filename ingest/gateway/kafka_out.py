"""The Kafka side: an idempotent acks=all producer that (re)connects in the background."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ingest.gateway.errors import Reject
from ingest.gateway.metrics import Metrics
from mimetic.config import Settings
from mimetic.kafka_security import client_kwargs, describe

log = logging.getLogger("mimetic.gateway")


def _too_large(exc: BaseException) -> bool:
    """A permanent size refusal (client or broker side): 413, not 503."""
    from aiokafka.errors import MessageSizeTooLargeError

    return isinstance(exc, MessageSizeTooLargeError)


class KafkaOut:
    """aiokafka producer (idempotent, acks=all) that (re)connects in the background."""

    def __init__(self, settings: Settings, metrics: Metrics):
        self.s, self.metrics = settings, metrics
        self.producer = None
        self.inflight = 0
        self._task: asyncio.Task | None = None
        self.last_ok = 0.0
        self.last_fail = 0.0

    def _new_producer(self):
        from aiokafka import AIOKafkaProducer

        return AIOKafkaProducer(
            bootstrap_servers=self.s.bootstrap_servers(), client_id="mimetic-gateway", acks="all",
            enable_idempotence=True, linger_ms=self.s.gateway_linger_ms,
            max_request_size=max(1_048_576, self.s.gateway_max_body_bytes + 65_536),
            request_timeout_ms=int(max(2.0, self.s.gateway_kafka_timeout_s) * 1000),
            retry_backoff_ms=200, metadata_max_age_ms=30_000, **client_kwargs(self.s))

    async def start(self) -> None:
        client_kwargs(self.s)   # a missing password file or certificate stops the start, not a retry loop
        self._task = asyncio.create_task(self._connect_loop())

    async def _connect_loop(self) -> None:
        delay = 0.5
        while self.producer is None:
            p = self._new_producer()
            try:
                await asyncio.wait_for(p.start(), timeout=max(5.0, self.s.gateway_kafka_timeout_s))
                self.producer = p
                self.metrics.kafka_up.set(1)
                log.info("kafka producer connected to %s (%s)", ",".join(self.s.bootstrap_servers()),
                         describe(self.s))
                return
            except Exception as exc:  # broker down at start: keep trying, answer 503 meanwhile
                log.warning("kafka not reachable (%s); retrying in %.1fs", exc, delay)
                try:
                    await p.stop()
                except Exception:
                    pass
                await asyncio.sleep(delay)
                delay = min(5.0, delay * 2)

    @property
    def up(self) -> bool:
        return self.producer is not None and not (self.last_fail > self.last_ok)

    async def send(self, topic: str, key: bytes, value: bytes, headers: list) -> Any:
        if self.producer is None:
            raise Reject(503, "kafka_unavailable", "Kafka is not reachable yet")
        if self.inflight >= self.s.gateway_max_inflight:
            raise Reject(503, "overloaded", "too many records awaiting Kafka acknowledgement")
        self.inflight += 1
        try:
            # asyncio.timeout, not wait_for: no Task per record (this is the hot path)
            async with asyncio.timeout(self.s.gateway_kafka_timeout_s):
                return await self.producer.send(topic, value, key=key, headers=headers)
        except TimeoutError:
            self._failed()
            self.inflight -= 1
            raise Reject(503, "kafka_unavailable", "Kafka did not take the record in time") from None
        except Exception as exc:
            self.inflight -= 1
            if _too_large(exc):
                raise Reject(413, "body_too_large", "record larger than Kafka accepts (message.max.bytes)") from None
            self._failed()
            raise Reject(503, "kafka_unavailable", f"{type(exc).__name__}") from None

    async def wait(self, fut: Any, deadline: float) -> Any:
        """Await the acknowledgement of a record handed to :meth:`send`."""
        try:
            # aiokafka skips message futures that are already done, so cancelling on timeout is safe
            async with asyncio.timeout(max(0.01, deadline - time.monotonic())):
                md = await fut
            self.last_ok = time.monotonic()
            return md
        except TimeoutError:
            self._failed()
            raise Reject(503, "kafka_unavailable", "Kafka did not acknowledge in time") from None
        except Exception as exc:
            if _too_large(exc):
                raise Reject(413, "body_too_large", "record larger than Kafka accepts (message.max.bytes)") from None
            self._failed()
            raise Reject(503, "kafka_unavailable", f"{type(exc).__name__}: {exc}"[:200]) from None
        finally:
            self.inflight -= 1

    def _failed(self) -> None:
        self.last_fail = time.monotonic()
        self.metrics.kafka_up.set(0)

    def collect(self) -> None:
        """Refresh the gauges (called when /metrics is scraped, not per record)."""
        self.metrics.inflight.set(self.inflight)
        self.metrics.kafka_up.set(1 if self.up else 0)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        if self.producer is not None:
            try:
                await asyncio.wait_for(self.producer.stop(), timeout=10)
            except Exception:
                pass


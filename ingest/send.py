"""Clients that deliver device records: to the gateway (WebSocket or HTTP, retrying) or straight to Kafka.

Used by `mimetic simulate` and `mimetic replay`, and usable from benchmarks. All of
them retry 503/429 and connection failures until the record is acknowledged or
``give_up_s`` passes, so "nothing acknowledged is lost" extends to "nothing sent
is lost" as long as the gateway comes back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Iterable

import aiohttp

from ingest import wire

log = logging.getLogger("mimetic.send")

RETRYABLE = {429, 502, 503, 504}


def client_ssl(ca_file: Path | str | None) -> ssl.SSLContext | None:
    """TLS context of gateway clients: the system's trust store, or only `ca_file`'s CAs when given
    (None: aiohttp's default verification, used only for https/wss URLs)."""
    if ca_file is None:
        return None
    return ssl.create_default_context(cafile=str(ca_file))


def gateway_connector(ca_file: Path | str | None, **kwargs: Any) -> aiohttp.TCPConnector:
    """An aiohttp connector for https/wss gateways that trusts `ca_file` (unset: the system)."""
    ctx = client_ssl(ca_file)
    return aiohttp.TCPConnector(**kwargs) if ctx is None else aiohttp.TCPConnector(ssl=ctx, **kwargs)


@dataclass
class DeliveryStats:
    sent: int = 0          # records acknowledged (202)
    rejected: int = 0      # records refused for good (4xx other than 429)
    retries: int = 0       # re-sends after 503/429/connection loss
    reconnects: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)

    def ok(self, kind: str) -> None:
        self.sent += 1
        self.by_kind[kind] = self.by_kind.get(kind, 0) + 1

    def refused(self, reason: str) -> None:
        self.rejected += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {"sent": self.sent, "rejected": self.rejected, "retries": self.retries, "reconnects": self.reconnects,
                "by_kind": dict(self.by_kind), "reasons": dict(self.reasons)}


def ws_message(kind: str, item: Any) -> bytes | str:
    if kind == wire.KIND_FRAME:
        return wire.encode_frame(item)
    return json.dumps({"kind": kind, **json.loads(wire.encode_model(item))})


def http_request(kind: str, item: Any) -> tuple[str, bytes, str]:
    """(path suffix, body, content type) of one record for the HTTP routes."""
    if kind == wire.KIND_FRAME:
        return "frames", wire.encode_frame(item), wire.CT_FRAME
    return ("telemetry" if kind == wire.KIND_TELEMETRY else "events"), wire.encode_model(item), wire.CT_JSON


class HttpSender:
    """One POST per record, retried on 503/429/connection errors (honours Retry-After, capped)."""

    def __init__(self, base_url: str, device_id: str, secret: str, session: aiohttp.ClientSession,
                 stats: DeliveryStats | None = None, give_up_s: float = 120.0, max_backoff_s: float = 2.0):
        self.base = base_url.rstrip("/")
        self.device_id, self.session = device_id, session
        self.headers = {"Authorization": f"Bearer {secret}"}
        self.stats = stats or DeliveryStats()
        self.give_up_s, self.max_backoff_s = give_up_s, max_backoff_s

    async def send(self, kind: str, item: Any) -> dict[str, Any]:
        path, body, ct = http_request(kind, item)
        url = f"{self.base}/v1/devices/{self.device_id}/{path}"
        deadline = time.monotonic() + self.give_up_s
        delay = 0.1
        while True:
            try:
                async with self.session.post(url, data=body, headers={**self.headers, "Content-Type": ct}) as r:
                    payload = await r.json(content_type=None)
                    if r.status == 202:
                        self.stats.ok(kind)
                        return payload
                    if r.status not in RETRYABLE:
                        self.stats.refused(str(payload.get("error")))
                        return payload
                    wait = min(self.max_backoff_s, float(r.headers.get("Retry-After", delay)))
            except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError) as exc:
                log.debug("send failed: %s", exc)
                wait = delay
            if time.monotonic() + wait > deadline:
                raise TimeoutError(f"gave up delivering {kind} seq {item.seq} after {self.give_up_s}s")
            self.stats.retries += 1
            await asyncio.sleep(wait)
            delay = min(self.max_backoff_s, delay * 2)


class WsSender:
    """A device's WebSocket stream with a window of unacknowledged messages.

    Messages refused with 503/429, and everything unacknowledged when the connection
    drops, are sent again (the gateway marks them ``resent``/``dup``). Call
    :meth:`send` for each record, then :meth:`close` to wait for every acknowledgement.
    """

    def __init__(self, base_url: str, device_id: str, secret: str, session: aiohttp.ClientSession,
                 stats: DeliveryStats | None = None, window: int = 256, give_up_s: float = 120.0):
        self.url = base_url.rstrip("/").replace("http", "ws", 1) + f"/v1/devices/{device_id}/stream"
        self.session, self.secret = session, secret
        self.stats = stats or DeliveryStats()
        self.window, self.give_up_s = window, give_up_s
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.inflight: deque[tuple[str, Any, bytes | str]] = deque()  # in send order on this connection
        self.retry: deque[tuple[str, Any, bytes | str]] = deque()
        self.space = asyncio.Semaphore(window)
        self.reader: asyncio.Task | None = None
        self.fatal: str | None = None
        self.drained = asyncio.Event()

    async def _connect(self) -> None:
        deadline = time.monotonic() + self.give_up_s
        delay = 0.2
        while True:
            try:
                self.ws = await self.session.ws_connect(self.url, headers={"Authorization": f"Bearer {self.secret}"},
                                                        max_msg_size=0, heartbeat=20)
                self.reader = asyncio.create_task(self._read(self.ws))
                return
            except aiohttp.WSServerHandshakeError as exc:
                if exc.status not in RETRYABLE:
                    self.fatal = f"handshake refused: {exc.status}"
                    raise RuntimeError(self.fatal) from None
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not connect to {self.url}")
            await asyncio.sleep(delay)
            delay = min(2.0, delay * 2)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            ack = json.loads(msg.data)
            if not self.inflight:
                continue
            kind, item, payload = self.inflight.popleft()
            status = ack.get("status")
            if status == 202:
                self.stats.ok(kind)
                self.space.release()
            elif status in RETRYABLE:
                self.stats.retries += 1
                self.retry.append((kind, item, payload))
            else:
                self.stats.refused(str(ack.get("error")))
                self.space.release()
                if status in (401, 403, 404):
                    self.fatal = f"{status} {ack.get('error')}"
            if not self.inflight and not self.retry:
                self.drained.set()
        # connection gone: everything unacknowledged goes again
        while self.inflight:
            self.retry.appendleft(self.inflight.pop())
        self.ws = None

    async def _ensure(self) -> aiohttp.ClientWebSocketResponse:
        if self.fatal:
            raise RuntimeError(f"{self.url}: {self.fatal}")
        if self.ws is None or self.ws.closed:
            if self.reader is not None:
                await asyncio.gather(self.reader, return_exceptions=True)
                self.stats.reconnects += 1
            while self.inflight:
                self.retry.appendleft(self.inflight.pop())
            await self._connect()
        return self.ws

    async def _push(self, kind: str, item: Any, payload: bytes | str) -> None:
        while True:
            ws = await self._ensure()
            self.inflight.append((kind, item, payload))
            self.drained.clear()
            try:
                if isinstance(payload, bytes):
                    await ws.send_bytes(payload)
                else:
                    await ws.send_str(payload)
                return
            except (ConnectionError, aiohttp.ClientError, RuntimeError):
                if self.inflight and self.inflight[-1][2] is payload:
                    self.inflight.pop()
                await asyncio.sleep(0.2)

    async def _flush_retries(self) -> None:
        if self.retry:
            await asyncio.sleep(0.25)
        while self.retry:
            await self._push(*self.retry.popleft())

    async def send(self, kind: str, item: Any) -> None:
        payload = ws_message(kind, item)
        while True:
            # refused (503/429) messages keep their window slot: re-send them while waiting for space,
            # or a window full of refusals would wait for itself forever
            await self._flush_retries()
            try:
                async with asyncio.timeout(0.25):
                    await self.space.acquire()
                break
            except TimeoutError:
                if self.fatal:
                    raise RuntimeError(f"{self.url}: {self.fatal}") from None
        await self._push(kind, item, payload)

    async def close(self) -> None:
        deadline = time.monotonic() + self.give_up_s
        while self.inflight or self.retry:
            if self.fatal:
                raise RuntimeError(f"{self.url}: {self.fatal}")
            await self._flush_retries()
            if self.ws is None and self.inflight:
                await self._ensure()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.inflight) + len(self.retry)} records unacknowledged")
            try:
                await asyncio.wait_for(self.drained.wait(), timeout=0.5)
            except asyncio.TimeoutError:
                pass
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            await asyncio.gather(self.reader, return_exceptions=True)


class KafkaSender:
    """Straight to Kafka (no gateway), same record format; for load tests and trusted producers."""

    def __init__(self, settings, source: str = "simulator", stats: DeliveryStats | None = None):
        from aiokafka import AIOKafkaProducer

        from mimetic.kafka_security import client_kwargs

        self.producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers(), acks="all",
                                         enable_idempotence=True, linger_ms=5, max_batch_size=512 * 1024,
                                         client_id="mimetic-simulator", **client_kwargs(settings))
        self.topics = {k: wire.topic_spec_for(k).name(settings) for k in wire.KINDS}
        self.source = source
        self.stats = stats or DeliveryStats()
        self.pending: list[tuple[str, asyncio.Future]] = []

    async def start(self) -> None:
        await self.producer.start()

    async def send(self, kind: str, item: Any) -> None:
        key, value, headers = wire.encode_record(item, source=self.source)
        fut = await self.producer.send(self.topics[kind], value, key=key, headers=headers)
        self.pending.append((kind, fut))
        if len(self.pending) >= 2000:
            await self.flush()

    async def flush(self) -> None:
        for kind, fut in self.pending:
            await fut
            self.stats.ok(kind)
        self.pending.clear()

    async def close(self) -> None:
        await self.flush()
        await self.producer.stop()


async def pace(records: Iterable, realtime: bool, t0_us: int, wall0: float, speed: float = 1.0,
               max_rate: float = 0.0) -> AsyncIterator:
    """Yield records; in real time, each one not before its device time (relative to t0_us);
    otherwise as fast as possible, but at most ``max_rate`` records/s when > 0 (stay under the
    gateway's per-device rate limit)."""
    n = 0
    for r in records:
        if max_rate > 0 and not realtime:
            delay = wall0 + n / max_rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        if realtime:
            t_us = r.item.t_us
            delay = wall0 + (t_us - t0_us) / 1e6 / speed - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        elif n % 64 == 0:
            await asyncio.sleep(0)  # let other devices and the ack readers run
        n += 1
        yield r

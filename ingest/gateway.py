"""The ingest gateway: authenticated HTTP + WebSocket in, Kafka (acks=all) out.

Routes::

    POST /v1/devices/{device_id}/frames      body: binary frame (application/x-mimetic-frame or
                                             application/octet-stream) or JSON frame (application/json)
    POST /v1/devices/{device_id}/telemetry   body: JSON telemetry
    POST /v1/devices/{device_id}/events      body: JSON session event
    GET  /v1/devices/{device_id}/stream      WebSocket: binary messages are frames; text messages are
                                             JSON with "kind": "frame" | "telemetry" | "event"
                                             (inferred when absent). One JSON ack per message, in order:
                                             {"i": n, "kind": .., "seq": .., "status": 202, "dup": false}
                                             or {"i": n, "status": 4xx/503, "error": reason, "detail": ..}.
    GET  /healthz                            200 {"status": "ok", "kafka": true, "db": true} or 503
    GET  /metrics                            Prometheus text format

Answers: 202 only after Kafka has acknowledged the record (idempotent producer,
acks=all, key = device id). 400/413/415/422 with ``{"error": reason, "detail": ...}``
(reasons from :mod:`ingest.wire`), 401 missing/wrong credentials, 403 revoked
device, 404 unknown device, 429 over the per-device token bucket, 503 with
``Retry-After`` when Kafka (or the registry database) is unreachable or the
gateway has too many records in flight. Every 4xx produces nothing.

Authentication: ``Authorization: Bearer <device secret>`` on every request and on
the WebSocket handshake (see :mod:`ingest.registry`).

Why a cache in front of scrypt (:class:`DeviceAuth`): a slow KDF on every request
would cap a 2-core gateway at a few dozen requests per second. The registry row of
a device (status, secret hash, channel map) is cached for ``gateway_auth_cache_ttl_s``
(5 s); next to it, the SHA-256 digests of secrets that passed scrypt against that
exact hash are remembered, so a repeat request costs one SHA-256 and a constant-time
compare. An unknown secret forces a re-read of the row (at most once a second per
device), so a freshly rotated secret works at once. When the TTL expires the row is re-read (one indexed query per device per
TTL): a revocation or a rotated secret takes effect within the TTL, on open
WebSockets too (they are closed with 4403). Digests of wrong secrets are remembered
as well (bounded), so guessing does not become a CPU amplifier. The cache holds
digests, never the secrets. If the registry database is unreachable, rows read in
the last 5 minutes keep being used (stale-if-error: ingest survives a short database
outage, at the price of revocations waiting for the database); devices not in the
cache get 503.

Duplicates: per device and record kind, the gateway remembers the last 8192 sequence
numbers Kafka acknowledged and those attempted but not (yet) acknowledged; a
record whose seq was acknowledged is still written, with header ``dup: 1``; one
attempted before without an acknowledgement (a retry after a 503) gets ``resent: 1``.
So retries are always safe and never silently merged.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import signal
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST

from ingest import registry, wire
from mimetic.config import Settings

log = logging.getLogger("mimetic.gateway")

#: while the registry database is unreachable, a device row read successfully this recently is still used
STALE_IF_ERROR_S = 300.0


class Reject(Exception):
    """An answer other than 202: status, reason, detail, extra headers."""

    def __init__(self, status: int, reason: str, detail: str = "", headers: dict[str, str] | None = None):
        super().__init__(reason)
        self.status, self.reason, self.detail, self.headers = status, reason, detail, headers or {}

    @classmethod
    def from_wire(cls, exc: wire.WireError) -> "Reject":
        return cls(exc.status, exc.reason, exc.detail)

    def body(self) -> dict[str, Any]:
        return {"error": self.reason, "detail": self.detail}


# ---------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("mimetic_gateway_requests_total", "HTTP requests and WebSocket messages by route and status",
                                ["route", "status"], registry=r)
        self.rejected = Counter("mimetic_gateway_rejected_total", "Refused records by reason", ["reason"], registry=r)
        self.accepted = Counter("mimetic_gateway_records_total", "Records acknowledged by Kafka", ["kind"], registry=r)
        self.marked = Counter("mimetic_gateway_duplicates_total", "Records passed through with a dup/resent mark",
                              ["kind", "mark"], registry=r)
        self.latency = Histogram("mimetic_gateway_request_seconds", "Request (or WebSocket message) handling time",
                                 ["route"], registry=r,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.kafka_up = Gauge("mimetic_gateway_kafka_up", "1 when the producer is connected", registry=r)
        self.inflight = Gauge("mimetic_gateway_inflight_records", "Records awaiting Kafka acknowledgement", registry=r)
        self.ws = Gauge("mimetic_gateway_websockets", "Open WebSocket streams", registry=r)
        self.auth_kdf = Counter("mimetic_gateway_auth_kdf_total", "scrypt verifications performed", registry=r)


# ---------------------------------------------------------------------------
# authentication
# ---------------------------------------------------------------------------


@dataclass
class _AuthEntry:
    row: registry.DeviceRow | None
    fetched: float
    verified_at: float = -1e9
    good: set[bytes] = field(default_factory=set)
    bad: OrderedDict = field(default_factory=OrderedDict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class DeviceAuth:
    """Bearer-token check against the registry with a short-TTL cache (see the module docstring)."""

    def __init__(self, pool, ttl_s: float, metrics: Metrics):
        self.pool, self.ttl, self.metrics = pool, ttl_s, metrics
        self.entries: dict[str, _AuthEntry] = {}

    async def _fetch(self, device_id: str) -> registry.DeviceRow | None:
        try:
            async with self.pool.connection(timeout=3.0) as conn:
                cur = await conn.execute(registry.DEVICE_QUERY, (device_id,))
                t = await cur.fetchone()
        except Exception as exc:  # pool timeout, connection refused, ...
            log.warning("registry unavailable: %s", exc)
            raise Reject(503, "registry_unavailable", "device registry unreachable, retry later") from None
        return registry.row_from_tuple(t) if t else None

    async def _entry(self, device_id: str) -> _AuthEntry:
        e = self.entries.get(device_id)
        now = time.monotonic()
        if e is not None and now - e.fetched < self.ttl:
            return e
        if e is None:
            e = self.entries.setdefault(device_id, _AuthEntry(None, -1e9))
        async with e.lock:
            if time.monotonic() - e.fetched >= self.ttl:
                try:
                    row = await self._fetch(device_id)
                except Reject:
                    # registry down: keep serving a device we verified recently (stale-if-error), so
                    # ingest survives a short database outage; unknown devices get 503
                    if e.row is not None and time.monotonic() - e.verified_at < STALE_IF_ERROR_S:
                        e.fetched = time.monotonic()  # try the database again after one TTL, not per request
                        return e
                    raise
                if row is None or e.row is None or row.secret_hash != e.row.secret_hash:
                    e.good.clear()
                    e.bad.clear()
                e.row, e.fetched = row, time.monotonic()
                e.verified_at = e.fetched
        if len(self.entries) > 100_000:  # unknown-device floods must not grow memory without bound
            self.entries.pop(next(iter(self.entries)))
        return e

    async def check(self, device_id: str, authorization: str | None) -> registry.DeviceRow:
        if not wire.DEVICE_ID_RE.match(device_id):
            raise Reject(404, "unknown_device", "no such device")
        e = await self._entry(device_id)
        if e.row is None:
            raise Reject(404, "unknown_device", "no such device")
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Reject(401, "missing_credentials", "send Authorization: Bearer <device secret>",
                         {"WWW-Authenticate": 'Bearer realm="mimetic"'})
        digest = hashlib.sha256(token.encode("utf-8", "replace")).digest()
        ok = any(hmac.compare_digest(digest, g) for g in e.good)
        if not ok and time.monotonic() - e.fetched > 1.0:
            # an unknown secret may be a just-rotated one: re-read the row (at most once a second per device)
            e.fetched = -1e9
            e = await self._entry(device_id)
            if e.row is None:
                raise Reject(404, "unknown_device", "no such device")
        if not ok:
            if digest in e.bad:
                raise Reject(401, "bad_credentials", "wrong device secret",
                             {"WWW-Authenticate": 'Bearer realm="mimetic", error="invalid_token"'})
            stored = e.row.secret_hash
            self.metrics.auth_kdf.inc()
            ok = await asyncio.get_running_loop().run_in_executor(None, registry.verify_secret, token, stored)
            if e.row is None or e.row.secret_hash != stored:
                ok = False  # rotated while we were hashing
            if ok:
                e.good.add(digest)
            else:
                e.bad[digest] = True
                while len(e.bad) > 64:
                    e.bad.popitem(last=False)
                raise Reject(401, "bad_credentials", "wrong device secret",
                             {"WWW-Authenticate": 'Bearer realm="mimetic", error="invalid_token"'})
        if e.row.status != "active":
            raise Reject(403, "device_revoked", "this device's credentials were revoked")
        return e.row


# ---------------------------------------------------------------------------
# rate limit and duplicate marks
# ---------------------------------------------------------------------------


class TokenBucket:
    __slots__ = ("rate", "burst", "tokens", "t")

    def __init__(self, rate: float, burst: float):
        self.rate, self.burst, self.tokens, self.t = rate, burst, burst, time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.t) * self.rate)
        self.t = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class SeqMemory:
    """Recently acknowledged / attempted sequence numbers of one (device, kind)."""

    __slots__ = ("acked", "attempted", "limit")

    def __init__(self, limit: int = 8192):
        self.acked: OrderedDict[int, None] = OrderedDict()
        self.attempted: OrderedDict[int, None] = OrderedDict()
        self.limit = limit

    @staticmethod
    def _put(d: OrderedDict, seq: int, limit: int) -> None:
        d[seq] = None
        d.move_to_end(seq)
        while len(d) > limit:
            d.popitem(last=False)

    def classify(self, seq: int) -> tuple[bool, bool]:
        """(dup, resent) marks for a record about to be sent; records the attempt."""
        dup = seq in self.acked
        resent = (not dup) and seq in self.attempted
        self._put(self.attempted, seq, self.limit)
        return dup, resent

    def acked_ok(self, seq: int) -> None:
        self._put(self.acked, seq, self.limit)


# ---------------------------------------------------------------------------
# Kafka
# ---------------------------------------------------------------------------


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
            bootstrap_servers=self.s.kafka_bootstrap, client_id="mimetic-gateway", acks="all",
            enable_idempotence=True, linger_ms=self.s.gateway_linger_ms,
            max_request_size=max(1_048_576, self.s.gateway_max_body_bytes + 65_536),
            request_timeout_ms=int(max(2.0, self.s.gateway_kafka_timeout_s) * 1000),
            retry_backoff_ms=200, metadata_max_age_ms=30_000)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._connect_loop())

    async def _connect_loop(self) -> None:
        delay = 0.5
        while self.producer is None:
            p = self._new_producer()
            try:
                await asyncio.wait_for(p.start(), timeout=max(5.0, self.s.gateway_kafka_timeout_s))
                self.producer = p
                self.metrics.kafka_up.set(1)
                log.info("kafka producer connected to %s", self.s.kafka_bootstrap)
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


# ---------------------------------------------------------------------------
# the application
# ---------------------------------------------------------------------------


class Gateway:
    def __init__(self, settings: Settings):
        self.s = settings
        self.metrics = Metrics()
        self.kafka = KafkaOut(settings, self.metrics)
        self.pool = None
        self.auth: DeviceAuth | None = None
        self.buckets: dict[str, TokenBucket] = {}
        self.seqs: dict[tuple[str, str], SeqMemory] = {}
        self.topics = {k: wire.topic_spec_for(k).name(settings) for k in wire.KINDS}
        self.websockets: set[web.WebSocketResponse] = set()

    # --- lifecycle ---
    async def on_startup(self, app: web.Application) -> None:
        from psycopg_pool import AsyncConnectionPool

        from processors.storage.roles import gateway_dsn

        self.pool = AsyncConnectionPool(gateway_dsn(self.s), min_size=1, max_size=4, open=False,
                                        kwargs={"autocommit": True, "connect_timeout": 3}, reconnect_timeout=0,
                                        check=AsyncConnectionPool.check_connection)
        await self.pool.open(wait=False)
        self.auth = DeviceAuth(self.pool, self.s.gateway_auth_cache_ttl_s, self.metrics)
        await self.kafka.start()

    async def on_shutdown(self, app: web.Application) -> None:
        for ws in list(self.websockets):
            await ws.close(code=1001, message=b"gateway shutting down")

    async def on_cleanup(self, app: web.Application) -> None:
        await self.kafka.stop()
        if self.pool is not None:
            await self.pool.close()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.s.gateway_max_body_bytes + 1)
        app.on_startup.append(self.on_startup)
        app.on_shutdown.append(self.on_shutdown)
        app.on_cleanup.append(self.on_cleanup)
        app.router.add_post("/v1/devices/{device_id}/frames", self.post_frames)
        app.router.add_post("/v1/devices/{device_id}/telemetry", self.post_telemetry)
        app.router.add_post("/v1/devices/{device_id}/events", self.post_events)
        app.router.add_get("/v1/devices/{device_id}/stream", self.stream)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/metrics", self.metrics_view)
        return app

    # --- helpers ---
    def _bucket(self, device_id: str) -> TokenBucket:
        b = self.buckets.get(device_id)
        if b is None:
            b = self.buckets[device_id] = TokenBucket(self.s.gateway_rate_per_s, self.s.gateway_rate_burst)
        return b

    def _rate(self, device_id: str) -> None:
        if not self._bucket(device_id).take():
            raise Reject(429, "rate_limited", f"over {self.s.gateway_rate_per_s:g} records/s for this device",
                         {"Retry-After": str(self.s.gateway_retry_after_s)})

    def _check_against_registry(self, item: Any, row: registry.DeviceRow) -> None:
        n_map = len(row.channel_map)
        if isinstance(item, wire.Frame):
            if n_map and item.n_channels != n_map:
                raise Reject(422, "channel_count_mismatch",
                             f"frame has {item.n_channels} channels, device map has {n_map}")
            if row.fs_hz and item.fs_hz != row.fs_hz:
                raise Reject(422, "rate_mismatch", f"frame at {item.fs_hz} Hz, device registered at {row.fs_hz} Hz")
        elif isinstance(item, wire.Telemetry):
            if n_map and item.impedance_kohm is not None and len(item.impedance_kohm) != n_map:
                raise Reject(422, "channel_count_mismatch",
                             f"{len(item.impedance_kohm)} impedances, device map has {n_map} channels")
        elif isinstance(item, wire.SessionStart):
            if n_map and len(item.channel_map) != n_map:
                raise Reject(422, "channel_map_mismatch",
                             f"session map has {len(item.channel_map)} channels, device has {n_map}")

    async def _submit(self, item: Any, kind: str, source: str) -> tuple[Any, tuple[str, str], int, bool, bool, float]:
        """Hand one validated record to the producer; returns what :meth:`_finish` needs."""
        mem_key = (item.device_id, kind)
        mem = self.seqs.get(mem_key)
        if mem is None:
            mem = self.seqs[mem_key] = SeqMemory()
        dup, resent = mem.classify(item.seq)
        key, value, headers = wire.encode_record(item, source=source, dup=dup, resent=resent)
        deadline = time.monotonic() + self.s.gateway_kafka_timeout_s
        fut = await self.kafka.send(self.topics[kind], key, value, headers)
        return fut, mem_key, item.seq, dup, resent or getattr(item, "resent", False), deadline

    async def _finish(self, pending, kind: str) -> dict[str, Any]:
        fut, mem_key, seq, dup, resent, deadline = pending
        md = await self.kafka.wait(fut, deadline)
        self.seqs[mem_key].acked_ok(seq)
        self.metrics.accepted.labels(kind).inc()
        if dup:
            self.metrics.marked.labels(kind, "dup").inc()
        if resent:
            self.metrics.marked.labels(kind, "resent").inc()
        return {"status": 202, "kind": kind, "seq": seq, "dup": dup, "resent": resent,
                "partition": md.partition, "offset": md.offset}

    def _decode(self, kind: str, body: bytes, content_type: str, device_id: str) -> Any:
        ct = content_type.split(";")[0].strip().lower()
        if kind == wire.KIND_FRAME:
            if ct in (wire.CT_FRAME, "application/octet-stream"):
                return wire.decode_frame(body, expected_device=device_id)
            if ct == wire.CT_JSON:
                return wire.decode_frame_json(body, expected_device=device_id)
            raise Reject(415, "unsupported_media_type",
                         f"frames are {wire.CT_FRAME} or {wire.CT_JSON}, not {ct or 'missing'}")
        if ct != wire.CT_JSON:
            raise Reject(415, "unsupported_media_type", f"{kind} bodies are {wire.CT_JSON}")
        if kind == wire.KIND_TELEMETRY:
            return wire.decode_telemetry(body, expected_device=device_id)
        return wire.decode_event(body, expected_device=device_id)

    def _answer(self, route: str, status: int, body: dict, t0: float, headers: dict[str, str] | None = None,
                reason: str | None = None) -> web.Response:
        self.metrics.requests.labels(route, str(status)).inc()
        if reason:
            self.metrics.rejected.labels(reason).inc()
        self.metrics.latency.labels(route).observe(time.monotonic() - t0)
        return web.json_response(body, status=status, headers=headers)

    async def _post(self, request: web.Request, kind: str, limit: int) -> web.Response:
        t0 = time.monotonic()
        route = kind
        device_id = request.match_info["device_id"]
        try:
            row = await self.auth.check(device_id, request.headers.get("Authorization"))
            if request.content_length is not None and request.content_length > limit:
                raise Reject(413, "body_too_large", f"{request.content_length} bytes > {limit}")
            body = await self._read_body(request, limit)
            if not body:
                raise Reject(400, "empty_body", "no body")
            self._rate(device_id)
            try:
                item = self._decode(kind, body, request.headers.get("Content-Type", ""), device_id)
            except wire.WireError as exc:
                raise Reject.from_wire(exc) from None
            self._check_against_registry(item, row)
            result = await self._finish(await self._submit(item, kind, "http"), kind)
            return self._answer(route, 202, result, t0)
        except Reject as r:
            headers = dict(r.headers)
            if r.status == 503:
                headers.setdefault("Retry-After", str(self.s.gateway_retry_after_s))
            return self._answer(route, r.status, r.body(), t0, headers, r.reason)
        except web.HTTPRequestEntityTooLarge:
            return self._answer(route, 413, {"error": "body_too_large", "detail": f"> {limit} bytes"}, t0,
                                reason="body_too_large")

    @staticmethod
    async def _read_body(request: web.Request, limit: int) -> bytes:
        """The whole body (StreamReader.read(n) may return less than is coming), refusing more than limit."""
        buf = bytearray()
        while True:
            chunk = await request.content.read(65536)
            if not chunk:
                return bytes(buf)
            buf += chunk
            if len(buf) > limit:
                raise Reject(413, "body_too_large", f"more than {limit} bytes")

    async def post_frames(self, request: web.Request) -> web.Response:
        return await self._post(request, wire.KIND_FRAME, self.s.gateway_max_body_bytes)

    async def post_telemetry(self, request: web.Request) -> web.Response:
        return await self._post(request, wire.KIND_TELEMETRY, self.s.gateway_max_json_bytes)

    async def post_events(self, request: web.Request) -> web.Response:
        return await self._post(request, wire.KIND_EVENT, self.s.gateway_max_json_bytes)

    # --- WebSocket ---
    def _decode_ws(self, msg, device_id: str) -> tuple[str, Any]:
        if msg.type == WSMsgType.BINARY:
            return wire.KIND_FRAME, wire.decode_frame(msg.data, expected_device=device_id)
        obj = wire.parse_json(msg.data)
        if not isinstance(obj, dict):
            raise wire.WireError("bad_json", "a text message is a JSON object", 400)
        kind = obj.get("kind")
        if kind is None:
            kind = wire.KIND_FRAME if "samples" in obj else (wire.KIND_EVENT if "type" in obj else wire.KIND_TELEMETRY)
        if kind == wire.KIND_FRAME:
            return kind, wire.frame_from_json(obj, device_id)
        if kind == wire.KIND_TELEMETRY:
            return kind, wire.telemetry_from_json(obj, device_id)
        if kind == wire.KIND_EVENT:
            obj = {k: v for k, v in obj.items() if k != "kind"}
            return kind, wire.event_from_json(obj, device_id)
        raise wire.WireError("unknown_kind", f"kind must be one of {wire.KINDS}", 422)

    async def stream(self, request: web.Request) -> web.StreamResponse:
        t0 = time.monotonic()
        device_id = request.match_info["device_id"]
        authz = request.headers.get("Authorization")
        try:
            await self.auth.check(device_id, authz)
        except Reject as r:
            return self._answer("stream", r.status, r.body(), t0, r.headers, r.reason)
        ws = web.WebSocketResponse(max_msg_size=self.s.gateway_max_body_bytes, heartbeat=30, compress=False)
        await ws.prepare(request)
        self.websockets.add(ws)
        self.metrics.ws.inc()
        acks: asyncio.Queue = asyncio.Queue(maxsize=1024)

        async def acker() -> None:
            while True:
                item = await acks.get()
                if item is None:
                    return
                i, kind, pending, ready, t_msg = item
                if pending is not None:
                    try:
                        ready = {"i": i, **(await self._finish(pending, kind))}
                        del ready["partition"], ready["offset"]
                    except Reject as r:
                        ready = {"i": i, "status": r.status, "kind": kind, "seq": pending[2], **r.body()}
                        self.metrics.rejected.labels(r.reason).inc()
                self.metrics.requests.labels("stream", str(ready["status"])).inc()
                self.metrics.latency.labels("stream").observe(time.monotonic() - t_msg)
                if not ws.closed:
                    try:
                        await ws.send_str(json.dumps(ready))
                    except ConnectionError:
                        pass

        ack_task = asyncio.create_task(acker())
        i = 0
        close_code = 1000
        try:
            async for msg in ws:
                if msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
                    continue
                i += 1
                t_msg = time.monotonic()
                kind = wire.KIND_FRAME if msg.type == WSMsgType.BINARY else None
                try:
                    row = await self.auth.check(device_id, authz)
                    self._rate(device_id)
                    kind, item = self._decode_ws(msg, device_id)
                    self._check_against_registry(item, row)
                    pending = await self._submit(item, kind, "ws")
                    await acks.put((i, kind, pending, None, t_msg))
                except wire.WireError as exc:
                    self.metrics.rejected.labels(exc.reason).inc()
                    await acks.put((i, kind, None, {"i": i, "status": exc.status, "kind": kind, **exc.as_json()}, t_msg))
                except Reject as r:
                    self.metrics.rejected.labels(r.reason).inc()
                    await acks.put((i, kind, None, {"i": i, "status": r.status, "kind": kind, **r.body()}, t_msg))
                    if r.status in (401, 403, 404):
                        close_code = 4000 + r.status
                        break
        finally:
            await acks.put(None)
            try:
                await asyncio.wait_for(ack_task, timeout=self.s.gateway_kafka_timeout_s + 5)
            except Exception:
                ack_task.cancel()
            if not ws.closed:
                await ws.close(code=close_code)
            self.websockets.discard(ws)
            self.metrics.ws.dec()
        return ws

    # --- health and metrics ---
    async def healthz(self, request: web.Request) -> web.Response:
        db_ok = False
        try:
            async with self.pool.connection(timeout=1.0) as conn:
                await conn.execute("select 1")
            db_ok = True
        except Exception:
            pass
        kafka_ok = self.kafka.up
        ok = db_ok and kafka_ok
        return web.json_response({"status": "ok" if ok else "degraded", "kafka": kafka_ok, "db": db_ok,
                                  "inflight": self.kafka.inflight, "websockets": len(self.websockets)},
                                 status=200 if ok else 503)

    async def metrics_view(self, request: web.Request) -> web.Response:
        self.kafka.collect()
        return web.Response(body=generate_latest(self.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


def run_gateway(settings: Settings) -> None:
    """Serve until SIGTERM/SIGINT (graceful: open requests finish, the producer flushes)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    gw = Gateway(settings)

    async def main() -> None:
        runner = web.AppRunner(gw.app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, settings.gateway_host, settings.gateway_port, backlog=1024)
        await site.start()
        log.info("gateway listening on http://%s:%d", settings.gateway_host, settings.gateway_port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("gateway stopping")
        await runner.cleanup()

    asyncio.run(main())

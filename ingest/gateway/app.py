"""The aiohttp application: device routes (HTTP and WebSocket), health and metrics."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiohttp import web

from ingest import registry, wire
from ingest.gateway.auth import DeviceAuth
from ingest.gateway.decode import Decoder, decode_http
from ingest.gateway.errors import SERVER_NAME, Reject
from ingest.gateway.kafka_out import KafkaOut
from ingest.gateway.limits import (JSON_OFFLOOP_BYTES, ByteBudget, FailedAuthLimiter, KeyedBuckets, StreamCounter, TokenBucket,
                                   frame_body_limit)
from ingest.gateway.metrics import Metrics
from ingest.gateway.openapi import openapi_json
from ingest.gateway.seqs import SeqMemory
from ingest.gateway.stream import serve_stream
from mimetic.config import Settings

log = logging.getLogger("mimetic.gateway")

def registry_pool(settings: Settings):
    """The gateway's (small, unopened) connection pool to the device registry, as the gateway's
    own login (it reads device credentials and channel maps, nothing else)."""
    from psycopg_pool import AsyncConnectionPool

    from processors.storage.roles import gateway_dsn

    return AsyncConnectionPool(gateway_dsn(settings), min_size=1, max_size=4, open=False,
                               kwargs={"autocommit": True, "connect_timeout": 3}, reconnect_timeout=0,
                               check=AsyncConnectionPool.check_connection)


class Gateway:
    def __init__(self, settings: Settings):
        self.s = settings
        self.metrics = Metrics()
        self.kafka = KafkaOut(settings, self.metrics)
        self.pool = None
        self.auth: DeviceAuth | None = None
        self.buckets: dict[str, TokenBucket] = {}
        self.byte_buckets = KeyedBuckets(settings.gateway_device_bytes_per_s,
                                         max(settings.gateway_device_bytes_burst, settings.gateway_max_body_bytes),
                                         max_keys=100_000)
        self.failures = FailedAuthLimiter(settings.gateway_auth_fail_per_s, settings.gateway_auth_fail_burst,
                                          settings.gateway_auth_fail_track)
        self.streams = StreamCounter(settings.gateway_ws_per_device)
        self.body_budget = ByteBudget(settings.gateway_max_buffered_bytes)
        self.decoder = Decoder(settings.gateway_decode_workers)
        self.seqs: dict[tuple[str, str], SeqMemory] = {}
        self.topics = {k: wire.topic_spec_for(k).name(settings) for k in wire.KINDS}
        self.websockets: set[web.WebSocketResponse] = set()

    # --- lifecycle ---
    async def on_startup(self, app: web.Application) -> None:
        self.pool = registry_pool(self.s)
        await self.pool.open(wait=False)
        self.auth = DeviceAuth(self.pool, self.s.gateway_auth_cache_ttl_s, self.metrics, self.failures,
                               self.s.gateway_kdf_concurrency)
        await self.decoder.start()
        await self.kafka.start()

    async def on_shutdown(self, app: web.Application) -> None:
        for ws in list(self.websockets):
            await ws.close(code=1001, message=b"gateway shutting down")

    async def on_cleanup(self, app: web.Application) -> None:
        self.decoder.stop()
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
        app.router.add_get("/v1/openapi.json", openapi_view)
        app.on_response_prepare.append(_server_header)
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
        """Hand one validated record to the producer; returns what :meth:`_finish` needs.

        The device-clock rule (:func:`ingest.wire.check_device_clock`) is judged here, against
        the receive time the record then carries in its ``received-at-us`` header."""
        received_at_us = wire.now_us()
        try:
            wire.check_device_clock(item.t_us, received_at_us, self.s.clock_max_future_s, self.s.clock_max_age_s)
        except wire.WireError as exc:
            raise Reject.from_wire(exc) from None
        mem_key = (item.device_id, kind)
        mem = self.seqs.get(mem_key)
        if mem is None:
            mem = self.seqs[mem_key] = SeqMemory()
        dup, resent = mem.classify(item.seq)
        key, value, headers = wire.encode_record(item, source=source, received_at_us=received_at_us,
                                                 dup=dup, resent=resent)
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

    @staticmethod
    def _media(kind: str, content_type: str) -> bool:
        """True for a JSON body, False for a binary frame; 415 for anything else."""
        ct = content_type.split(";")[0].strip().lower()
        if kind == wire.KIND_FRAME and ct in (wire.CT_FRAME, "application/octet-stream"):
            return False
        if ct == wire.CT_JSON:
            return True
        if kind == wire.KIND_FRAME:
            raise Reject(415, "unsupported_media_type",
                         f"frames are {wire.CT_FRAME} or {wire.CT_JSON}, not {ct or 'missing'}")
        raise Reject(415, "unsupported_media_type", f"{kind} bodies are {wire.CT_JSON}")

    def _take_bytes(self, device_id: str, n: int) -> None:
        if not self.byte_buckets.get(device_id).take(n):
            raise Reject(429, "byte_rate_limited",
                         f"over {self.s.gateway_device_bytes_per_s} bytes/s for this device",
                         {"Retry-After": str(self.s.gateway_retry_after_s)})

    def _answer(self, route: str, status: int, body: dict, t0: float, headers: dict[str, str] | None = None,
                reason: str | None = None) -> web.Response:
        self.metrics.requests.labels(route, str(status)).inc()
        if reason:
            self.metrics.rejected.labels(reason).inc()
        self.metrics.latency.labels(route).observe(time.monotonic() - t0)
        return web.json_response(body, status=status, headers=headers)

    async def _post(self, request: web.Request, kind: str, limit: int) -> web.Response:
        """Cheap checks first: credentials, media type, size against the device's registration,
        byte and record rate; then the body (with a deadline); then decoding (big JSON off the loop)."""
        t0 = time.monotonic()
        route = kind
        device_id = request.match_info["device_id"]
        body: bytes | None = None
        try:
            row = await self.auth.check(device_id, request.headers.get("Authorization"), request.remote or "")
            json_body = self._media(kind, request.headers.get("Content-Type", ""))
            if kind == wire.KIND_FRAME:
                limit = frame_body_limit(row, json_body, limit)
            if request.content_length is not None:
                if request.content_length > limit:
                    raise Reject(413, "body_too_large", f"{request.content_length} bytes > {limit}")
                self._take_bytes(device_id, request.content_length)
            with self.body_budget.reserve(request.content_length if request.content_length is not None else limit):
                try:
                    async with asyncio.timeout(self.s.gateway_body_timeout_s):
                        body = await self._read_body(request, limit)
                except TimeoutError:
                    raise Reject(408, "body_timeout",
                                 f"body not received within {self.s.gateway_body_timeout_s:g} s") from None
                if request.content_length is None:
                    self._take_bytes(device_id, len(body))
                if not body:
                    raise Reject(400, "empty_body", "no body")
                self._rate(device_id)
                try:
                    if json_body and len(body) > JSON_OFFLOOP_BYTES:
                        item = await self.decoder.run("http", kind, body, json_body, device_id)
                    else:
                        item = decode_http(kind, body, json_body, device_id)
                except wire.WireError as exc:
                    raise Reject.from_wire(exc) from None
                self._check_against_registry(item, row)
                result = await self._finish(await self._submit(item, kind, "http"), kind)
                return self._answer(route, 202, result, t0)
        except Reject as r:
            headers = dict(r.headers)
            if r.status == 503:
                headers.setdefault("Retry-After", str(self.s.gateway_retry_after_s))
            resp = self._answer(route, r.status, r.body(), t0, headers, r.reason)
            if body is None and request.can_read_body:
                resp.force_close()  # refused before its body was read: do not spend the loop draining it
            return resp
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

    async def stream(self, request: web.Request) -> web.StreamResponse:
        return await serve_stream(self, request)


async def _server_header(request: web.Request, response: web.StreamResponse) -> None:
    """A neutral Server header: no library or version."""
    response.headers["Server"] = SERVER_NAME


async def openapi_view(request: web.Request) -> web.Response:
    return web.Response(body=openapi_json(), content_type="application/json")

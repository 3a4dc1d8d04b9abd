"""The aiohttp application: device routes (HTTP and WebSocket), health and metrics."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from aiohttp import WSMsgType, web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ingest import registry, wire
from ingest.gateway.auth import DeviceAuth
from ingest.gateway.errors import Reject
from ingest.gateway.kafka_out import KafkaOut
from ingest.gateway.limits import TokenBucket
from ingest.gateway.metrics import Metrics
from ingest.gateway.seqs import SeqMemory
from mimetic.config import Settings

log = logging.getLogger("mimetic.gateway")


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

        self.pool = AsyncConnectionPool(self.s.db_dsn(), min_size=1, max_size=4, open=False,
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


"""The WebSocket stream of one device: one JSON ack per message, in order.

Limits: at most ``gateway_ws_per_device`` open streams per device (a handshake over
it is refused with HTTP 429 ``too_many_streams``; the open ones are kept), a
stream idle for ``gateway_ws_idle_s`` is closed with code 4408, every message
passes the device's byte and record buckets before it is decoded, and large
JSON messages are decoded off the event loop.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING

from aiohttp import WSMsgType, web

from ingest import registry, wire
from ingest.gateway.decode import decode_ws
from ingest.gateway.errors import Reject
from ingest.gateway.limits import JSON_OFFLOOP_BYTES, frame_body_limit

if TYPE_CHECKING:
    from ingest.gateway.app import Gateway

#: close codes: 4000 + the HTTP status of the refusal that ended the stream, and idle
CLOSE_IDLE = 4408


async def serve_stream(gw: "Gateway", request: web.Request) -> web.StreamResponse:
    t0 = time.monotonic()
    device_id = request.match_info["device_id"]
    authz = request.headers.get("Authorization")
    source = request.remote or ""
    try:
        row = await gw.auth.check(device_id, authz, source)
        if not web.WebSocketResponse().can_prepare(request).ok:
            raise Reject(426, "upgrade_required", "this route is a WebSocket: send an Upgrade handshake",
                         {"Upgrade": "websocket"})
        gw.streams.acquire(device_id)
    except Reject as r:
        headers = dict(r.headers)
        if r.status in (429, 503):
            headers.setdefault("Retry-After", str(gw.s.gateway_retry_after_s))
        return gw._answer("stream", r.status, r.body(), t0, headers, r.reason)
    try:
        return await _serve(gw, request, device_id, authz, source, row)
    finally:
        gw.streams.release(device_id)


async def _serve(gw: "Gateway", request: web.Request, device_id: str, authz: str | None, source: str,
                 row: registry.DeviceRow) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(max_msg_size=gw.s.gateway_max_body_bytes, heartbeat=30, compress=False)
    await ws.prepare(request)
    gw.websockets.add(ws)
    gw.metrics.ws.inc()
    acks: asyncio.Queue = asyncio.Queue(maxsize=1024)

    async def acker() -> None:
        while True:
            item = await acks.get()
            if item is None:
                return
            i, kind, pending, ready, t_msg = item
            if pending is not None:
                try:
                    ready = {"i": i, **(await gw._finish(pending, kind))}
                    del ready["partition"], ready["offset"]
                except Reject as r:
                    ready = {"i": i, "status": r.status, "kind": kind, "seq": pending[2], **r.body()}
                    gw.metrics.rejected.labels(r.reason).inc()
            gw.metrics.requests.labels("stream", str(ready["status"])).inc()
            gw.metrics.latency.labels("stream").observe(time.monotonic() - t_msg)
            if not ws.closed:
                try:
                    await ws.send_str(json.dumps(ready))
                except ConnectionError:
                    pass

    ack_task = asyncio.create_task(acker())
    i = 0
    close_code = 1000
    try:
        while True:
            try:
                msg = await ws.receive(timeout=gw.s.gateway_ws_idle_s)
            except TimeoutError:
                close_code = CLOSE_IDLE
                break
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                break
            if msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
                continue
            i += 1
            t_msg = time.monotonic()
            binary = msg.type == WSMsgType.BINARY
            kind = wire.KIND_FRAME if binary else None
            try:
                row = await gw.auth.check(device_id, authz, source)
                size = len(msg.data)
                limit = frame_body_limit(row, not binary, gw.s.gateway_max_body_bytes)
                if not binary:
                    limit = max(limit, gw.s.gateway_max_json_bytes)
                if size > limit:
                    raise Reject(413, "body_too_large", f"{size} bytes > {limit}")
                gw._take_bytes(device_id, size)
                gw._rate(device_id)
                if not binary and size > JSON_OFFLOOP_BYTES:
                    kind, item = await gw.decoder.run("ws", msg.data, binary, device_id)
                else:
                    kind, item = decode_ws(msg.data, binary, device_id)
                gw._check_against_registry(item, row)
                pending = await gw._submit(item, kind, "ws")
                await acks.put((i, kind, pending, None, t_msg))
            except wire.WireError as exc:
                gw.metrics.rejected.labels(exc.reason).inc()
                await acks.put((i, kind, None, {"i": i, "status": exc.status, "kind": kind, **exc.as_json()}, t_msg))
            except Reject as r:
                gw.metrics.rejected.labels(r.reason).inc()
                await acks.put((i, kind, None, {"i": i, "status": r.status, "kind": kind, **r.body()}, t_msg))
                if r.status in (401, 403, 404):
                    close_code = 4000 + r.status
                    break
    finally:
        await acks.put(None)
        try:
            await asyncio.wait_for(ack_task, timeout=gw.s.gateway_kafka_timeout_s + 5)
        except Exception:
            ack_task.cancel()
        if not ws.closed:
            await ws.close(code=close_code)
        gw.websockets.discard(ws)
        gw.metrics.ws.dec()
    return ws

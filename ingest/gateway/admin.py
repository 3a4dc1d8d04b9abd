"""The admin listener (``gateway_admin_host:gateway_admin_port``, loopback by default),
never the device port: ``/livez`` (the event loop turns), ``/readyz`` (Kafka and the
registry database reachable, else 503 with Retry-After), ``/healthz`` (the same as
``/readyz``, kept for existing users) and ``/metrics`` (Prometheus)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ingest.gateway.errors import SERVER_NAME

if TYPE_CHECKING:
    from ingest.gateway.app import Gateway

#: /livez fails when the loop ticker has not run for this long
LOOP_STALL_S = 5.0
TICK_S = 0.5


class LoopTicker:
    """Notes when the event loop last ran a short periodic task (its lag shows a busy loop)."""

    def __init__(self) -> None:
        self.last = time.monotonic()
        self.max_lag_s = 0.0
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        while True:
            t = time.monotonic()
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            self.max_lag_s = max(0.0, now - t - TICK_S)
            self.last = now

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


def admin_app(gw: "Gateway") -> web.Application:
    ticker = LoopTicker()

    async def on_startup(app: web.Application) -> None:
        ticker.start()

    async def on_cleanup(app: web.Application) -> None:
        ticker.stop()

    async def livez(request: web.Request) -> web.Response:
        stalled_s = time.monotonic() - ticker.last
        ok = stalled_s < LOOP_STALL_S
        return web.json_response({"status": "ok" if ok else "stalled", "loop_lag_s": round(ticker.max_lag_s, 4)},
                                 status=200 if ok else 503)

    async def readyz(request: web.Request) -> web.Response:
        db_ok = False
        if gw.pool is not None:
            try:
                async with gw.pool.connection(timeout=1.0) as conn:
                    await conn.execute("select 1")
                db_ok = True
            except Exception:
                pass
        kafka_ok = gw.kafka.up
        ok = db_ok and kafka_ok
        return web.json_response({"status": "ok" if ok else "degraded", "kafka": kafka_ok, "db": db_ok,
                                  "inflight": gw.kafka.inflight, "websockets": len(gw.websockets)},
                                 status=200 if ok else 503,
                                 headers=None if ok else {"Retry-After": str(gw.s.gateway_retry_after_s)})

    async def metrics_view(request: web.Request) -> web.Response:
        gw.kafka.collect()
        return web.Response(body=generate_latest(gw.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def server_header(request: web.Request, response: web.StreamResponse) -> None:
        response.headers["Server"] = SERVER_NAME

    app = web.Application()
    app.on_response_prepare.append(server_header)
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/healthz", readyz)
    app.router.add_get("/metrics", metrics_view)
    return app

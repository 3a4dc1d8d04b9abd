"""The admin listener every long-running process serves (gateway, worker, sink, notifier).

Never the device port; loopback by default (``MIMETIC_<PROCESS>_ADMIN_HOST/PORT``):

- ``/livez``: the event loop turns (a ticker ran within ``LOOP_STALL_S``), else 503;
- ``/readyz`` (and ``/healthz``, the gateway's older name): the process's own checks
  (Kafka, the database, its partitions), 200 when all pass, else 503 with Retry-After;
- ``/metrics``: the process's Prometheus registry.

Readiness answers are cached for ``READY_CACHE_S`` and computed by one probe at a time,
so a flood of probes costs at most one database connection and one Kafka metadata
request per interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

log = logging.getLogger("mimetic.admin")

#: /livez fails when the loop ticker has not run for this long
LOOP_STALL_S = 5.0
TICK_S = 0.5
#: a readiness answer is reused for this long
READY_CACHE_S = 1.0
#: each readiness check (database connect, Kafka metadata) gives up after this long
CHECK_TIMEOUT_S = 2.0


@dataclass
class Readiness:
    """Named pass/fail checks (all must pass) and details shown beside them."""

    checks: dict[str, bool]
    detail: dict[str, object] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(self.checks.values())


ReadyCheck = Callable[[], Awaitable[Readiness]]


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


class _CachedReadiness:
    """One readiness probe at a time, its answer reused for READY_CACHE_S."""

    def __init__(self, check: ReadyCheck):
        self.check = check
        self.lock = asyncio.Lock()
        self.at = -1e9
        self.last: Readiness | None = None

    async def get(self) -> Readiness:
        async with self.lock:
            if self.last is None or time.monotonic() - self.at >= READY_CACHE_S:
                try:
                    self.last = await self.check()
                except Exception as exc:  # a failing probe is "not ready", never a 500
                    log.warning("readiness check failed: %s: %s", type(exc).__name__, exc)
                    self.last = Readiness({"check": False})
                self.at = time.monotonic()
            return self.last


def admin_app(ready: ReadyCheck, registry: CollectorRegistry = REGISTRY, retry_after_s: int = 5,
              collect: Callable[[], None] | None = None, server_name: str = "mimetic") -> web.Application:
    """The admin routes; ``collect`` refreshes gauges just before a scrape."""
    ticker = LoopTicker()
    cached = _CachedReadiness(ready)

    async def on_startup(app: web.Application) -> None:
        ticker.start()

    async def on_cleanup(app: web.Application) -> None:
        ticker.stop()

    async def livez(request: web.Request) -> web.Response:
        ok = time.monotonic() - ticker.last < LOOP_STALL_S
        return web.json_response({"status": "ok" if ok else "stalled", "loop_lag_s": round(ticker.max_lag_s, 4)},
                                 status=200 if ok else 503)

    async def readyz(request: web.Request) -> web.Response:
        r = await cached.get()
        return web.json_response({"status": "ok" if r.ok else "degraded", **r.checks, **r.detail},
                                 status=200 if r.ok else 503,
                                 headers=None if r.ok else {"Retry-After": str(retry_after_s)})

    async def metrics_view(request: web.Request) -> web.Response:
        if collect is not None:
            collect()
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def server_header(request: web.Request, response: web.StreamResponse) -> None:
        response.headers["Server"] = server_name

    app = web.Application()
    app.on_response_prepare.append(server_header)
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/healthz", readyz)
    app.router.add_get("/metrics", metrics_view)
    return app


async def start_admin(app: web.Application, host: str, port: int, what: str) -> web.AppRunner | None:
    """Serve `app` on host:port; returns the runner (``await runner.cleanup()`` to stop).

    A port that cannot be bound (taken) is logged as an error and the process goes on without
    its admin listener: probes then fail, which shows it, but no data stops flowing.
    """
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        log.error("%s admin listener could not listen on %s:%d (%s): running without it", what, host, port,
                  exc)
        await runner.cleanup()
        return None
    log.info("%s admin listener on http://%s:%d (/livez /readyz /metrics)", what, host, port)
    return runner


async def db_reachable(dsn: str, timeout_s: float = CHECK_TIMEOUT_S) -> bool:
    """A new connection to the database answers ``select 1`` within `timeout_s`."""
    import psycopg

    try:
        async with asyncio.timeout(timeout_s):
            conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True, connect_timeout=max(2, int(timeout_s)))
            try:
                await conn.execute("select 1")
            finally:
                await conn.close()
        return True
    except (TimeoutError, OSError, psycopg.Error):
        return False


class KafkaProbe:
    """A metadata request through a client of its own: is any broker answering?"""

    def __init__(self, bootstrap: str | list[str], client_id: str = "mimetic-admin",
                 security: dict | None = None):
        self.bootstrap = bootstrap
        self.client_id = client_id
        self.security = security or {}   # mimetic.kafka_security.client_kwargs()
        self._client = None

    async def reachable(self, timeout_s: float = CHECK_TIMEOUT_S) -> bool:
        from aiokafka.client import AIOKafkaClient

        try:
            async with asyncio.timeout(timeout_s):
                if self._client is None:
                    client = AIOKafkaClient(bootstrap_servers=self.bootstrap, client_id=self.client_id,
                                            request_timeout_ms=int(timeout_s * 1000), **self.security)
                    try:
                        await client.bootstrap()
                    except BaseException:
                        await client.close()
                        raise
                    self._client = client
                md = await self._client.fetch_all_metadata()
                return bool(md.brokers())
        except Exception:
            return False

    async def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.close()
            self._client = None

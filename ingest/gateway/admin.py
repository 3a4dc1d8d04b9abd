"""The gateway's admin listener (:mod:`mimetic.admin_listener`): ``/readyz`` is Kafka (the
producer connected and not failing) and the registry database (a pooled ``select 1``);
``/healthz`` is the same, kept for existing users."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from ingest.gateway.errors import SERVER_NAME
from mimetic.admin_listener import CHECK_TIMEOUT_S, Readiness, admin_app as _admin_app

if TYPE_CHECKING:
    from ingest.gateway.app import Gateway


def admin_app(gw: "Gateway") -> web.Application:
    async def ready() -> Readiness:
        db_ok = False
        if gw.pool is not None:
            try:
                async with gw.pool.connection(timeout=CHECK_TIMEOUT_S / 2) as conn:
                    await conn.execute("select 1")
                db_ok = True
            except Exception:
                pass
        return Readiness({"kafka": gw.kafka.up, "db": db_ok},
                         {"inflight": gw.kafka.inflight, "websockets": len(gw.websockets)})

    return _admin_app(ready, gw.metrics.registry, retry_after_s=gw.s.gateway_retry_after_s,
                      collect=gw.kafka.collect, server_name=SERVER_NAME)

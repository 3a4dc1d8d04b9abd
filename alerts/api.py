"""The notifier's HTTP API: list, acknowledge and resolve alerts with a bearer token.

``Authorization: Bearer <token>`` (from ``mimetic notify tokens add``); the token's
name is recorded as who acted. A clinic user's token sees and acts on its clinic's
alerts only; anything else answers 404, like an unknown id.

* ``GET /alerts?all=1``: alerts (open ones unless ``all``), JSON list.
* ``POST /alerts/{alert_id}/ack`` and ``/resolve``, JSON body ``{"note": "..."}`` (optional).
* ``GET /health``: no token needed.
"""

from __future__ import annotations

import json

from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from mimetic.config import Settings

from . import actions
from .receivers import token_hash

MAX_BODY_BYTES = 16_384
POOL = web.AppKey("pool", AsyncConnectionPool)


async def _scope(request: web.Request) -> actions.Scope:
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("Bearer ") or len(auth) > 200:
        raise web.HTTPUnauthorized(headers={"WWW-Authenticate": "Bearer"})
    async with request.app[POOL].connection() as conn:
        cur = await conn.execute("select name, clinic_id from app.alert_api_token where token_sha256 = %s",
                                 (token_hash(auth[7:].strip()),))
        row = await cur.fetchone()
    if row is None:
        raise web.HTTPUnauthorized(headers={"WWW-Authenticate": "Bearer"})
    return actions.Scope(actor=row[0], clinic_id=row[1])


async def _list(request: web.Request) -> web.Response:
    scope = await _scope(request)
    async with request.app[POOL].connection() as conn:
        rows = await actions.list_alerts(conn, scope, open_only=request.query.get("all") not in ("1", "true"))
    return web.json_response([row.to_json() for row in rows])


async def _act(request: web.Request, fn) -> web.Response:
    scope = await _scope(request)
    note = ""
    if request.can_read_body:
        try:
            body = json.loads(await request.read() or b"{}")
        except ValueError:
            raise web.HTTPBadRequest(text="body must be JSON") from None
        note = body.get("note", "") if isinstance(body, dict) else ""
        if not isinstance(note, str):
            raise web.HTTPBadRequest(text="note must be a string")
    try:
        async with request.app[POOL].connection() as conn:
            res = await fn(conn, request.match_info["alert_id"][:200], scope, note)
    except actions.NoSuchAlert:
        raise web.HTTPNotFound(text="no such alert") from None
    return web.json_response({"alert_id": res.alert_id, "action": res.action, "done": res.done, "by": res.by,
                              "at": res.at.isoformat() if res.at else None})


async def _ack(request: web.Request) -> web.Response:
    return await _act(request, actions.acknowledge)


async def _resolve(request: web.Request) -> web.Response:
    return await _act(request, actions.resolve)


async def _health(_request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def make_app(pool: AsyncConnectionPool) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[POOL] = pool
    app.router.add_get("/health", _health)
    app.router.add_get("/alerts", _list)
    app.router.add_post("/alerts/{alert_id}/ack", _ack)
    app.router.add_post("/alerts/{alert_id}/resolve", _resolve)
    return app


async def start_api(s: Settings, pool: AsyncConnectionPool) -> web.AppRunner:
    runner = web.AppRunner(make_app(pool), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, s.notify_host, s.notify_port).start()
    return runner

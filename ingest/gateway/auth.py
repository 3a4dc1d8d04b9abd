"""Device authentication: bearer secret against the registry, behind a short-TTL cache."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from ingest import registry, wire
from ingest.gateway.errors import Reject
from ingest.gateway.metrics import Metrics

log = logging.getLogger("mimetic.gateway")

#: while the registry database is unreachable, a device row read successfully this recently is still used
STALE_IF_ERROR_S = 300.0

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


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
from ingest.gateway.limits import FailedAuthLimiter
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

    def __init__(self, pool, ttl_s: float, metrics: Metrics, failures: FailedAuthLimiter, kdf_concurrency: int = 1):
        self.pool, self.ttl, self.metrics, self.failures = pool, ttl_s, metrics, failures
        self.entries: dict[str, _AuthEntry] = {}
        self.kdf_slots = asyncio.Semaphore(max(1, kdf_concurrency))
        self.kdf_s = 0.05  #: moving average of one scrypt check, the wait of an unknown device

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

    async def check(self, device_id: str, authorization: str | None, source: str = "") -> registry.DeviceRow:
        """The device's registry row if ``authorization`` carries its secret and it is active.

        Refusals: 401 ``missing_credentials``; 401 ``unauthorized`` for a wrong secret AND for
        an unknown device (same body, about the same time: ids cannot be enumerated); 429
        ``too_many_failures`` over the failed-authentication budget of the source address or
        the device id (checked before any registry read or KDF); 403 ``device_revoked`` only
        after a correct secret; 503 when the registry is unreachable.
        """
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Reject(401, "missing_credentials", "send Authorization: Bearer <device secret>",
                         {"WWW-Authenticate": 'Bearer realm="mimetic"'})
        digest = hashlib.sha256(token.encode("utf-8", "replace")).digest()
        valid_id = wire.DEVICE_ID_RE.match(device_id) is not None
        cached = self.entries.get(device_id) if valid_id else None
        known_good = cached is not None and any(hmac.compare_digest(digest, g) for g in cached.good)
        if not known_good:
            self.failures.check(source, device_id)  # before any database read or KDF
        e = await self._entry(device_id) if valid_id else _AuthEntry(None, time.monotonic())
        ok = any(hmac.compare_digest(digest, g) for g in e.good)
        if not ok and valid_id and time.monotonic() - e.fetched > 1.0:
            # an unknown secret may be a just-rotated one: re-read the row (at most once a second per device)
            e.fetched = -1e9
            e = await self._entry(device_id)
        if not ok:
            ok = digest not in e.bad and await self._verify(e, token, source, device_id)
            if ok:
                e.good.add(digest)
            else:
                e.bad[digest] = True
                while len(e.bad) > 64:
                    e.bad.popitem(last=False)
                self.failures.failed(source, device_id)
                raise Reject(401, "unauthorized", "unknown device or wrong secret",
                             {"WWW-Authenticate": 'Bearer realm="mimetic", error="invalid_token"'})
        assert e.row is not None
        if e.row.status != "active":
            raise Reject(403, "device_revoked", "this device's credentials were revoked")
        return e.row

    async def _verify(self, e: _AuthEntry, token: str, source: str, device_id: str) -> bool:
        """One scrypt check in a thread, at most ``kdf_concurrency`` at once. An unknown device
        waits as long as a check takes (moving average) so its answer looks like a wrong secret's."""
        async with self.kdf_slots:
            self.failures.check(source, device_id)  # requests queued behind a flood are refused here
            stored = e.row.secret_hash if e.row is not None else None
            if stored is None:
                await asyncio.sleep(self.kdf_s)
                return False
            self.metrics.auth_kdf.inc()
            t0 = time.monotonic()
            ok = await asyncio.get_running_loop().run_in_executor(None, registry.verify_secret, token, stored)
            self.kdf_s = 0.8 * self.kdf_s + 0.2 * min(1.0, time.monotonic() - t0)
        return ok and e.row is not None and e.row.secret_hash == stored  # not rotated while we were hashing

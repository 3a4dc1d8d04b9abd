"""Limits that keep one client from taking the gateway: token buckets (records/s,
bytes/s), failed-authentication buckets per source and per device id, and the
per-device WebSocket count. Every keyed table is an LRU of bounded size, so no
stream of new keys (addresses, device ids) grows memory without bound."""

from __future__ import annotations

import contextlib
import time
from collections import OrderedDict
from collections.abc import Iterator

from ingest import registry, wire
from ingest.gateway.errors import Reject

#: JSON bodies larger than this are decoded in a thread, one at a time, so the event loop keeps turning
JSON_OFFLOOP_BYTES = 65_536
#: bytes of a JSON frame besides its samples (keys, ids, times); a sample is at most 8 bytes ("-32768, ")
JSON_FRAME_OVERHEAD_BYTES, JSON_SAMPLE_BYTES = 2048, 8


class TokenBucket:
    __slots__ = ("rate", "burst", "tokens", "t")

    def __init__(self, rate: float, burst: float):
        self.rate, self.burst, self.tokens, self.t = rate, burst, burst, time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.t) * self.rate)
        self.t = now

    def take(self, n: float = 1.0) -> bool:
        """Take n tokens if there are that many; False (nothing taken) otherwise."""
        self._refill()
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False

    def has(self, n: float = 1.0) -> bool:
        self._refill()
        return self.tokens >= n

    def drain(self, n: float = 1.0) -> None:
        """Take n tokens, going to zero at most (a failure is counted even when none are left)."""
        self._refill()
        self.tokens = max(0.0, self.tokens - n)

    def wait_s(self, n: float = 1.0) -> float:
        """Seconds until n tokens are there."""
        self._refill()
        return max(0.0, (n - self.tokens) / self.rate) if self.rate > 0 else float("inf")


class KeyedBuckets:
    """Token buckets by key, the least recently used dropped beyond ``max_keys``."""

    def __init__(self, rate: float, burst: float, max_keys: int):
        self.rate, self.burst, self.max_keys = rate, burst, max(1, max_keys)
        self.buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def get(self, key: str) -> TokenBucket:
        b = self.buckets.get(key)
        if b is None:
            b = self.buckets[key] = TokenBucket(self.rate, self.burst)
            while len(self.buckets) > self.max_keys:
                self.buckets.popitem(last=False)
        else:
            self.buckets.move_to_end(key)
        return b

    def peek(self, key: str) -> TokenBucket | None:
        return self.buckets.get(key)


class FailedAuthLimiter:
    """Failed authentications per source address and per device id.

    :meth:`check` is called before any registry read or KDF for a secret not already
    known good; :meth:`failed` after each refusal. Over either budget: 429 with
    ``Retry-After``, the same answer whether the device exists or not.
    """

    def __init__(self, rate_per_s: float, burst: int, max_keys: int):
        self.by_source = KeyedBuckets(rate_per_s, burst, max_keys)
        self.by_device = KeyedBuckets(rate_per_s, burst, max_keys)

    def check(self, source: str, device_id: str) -> None:
        waits = [b.wait_s() for b in (self.by_source.peek(source), self.by_device.peek(device_id))
                 if b is not None and not b.has()]
        if waits:
            retry_s = max(1, min(3600, int(max(waits)) + 1))
            raise Reject(429, "too_many_failures", "too many failed authentications, retry later",
                         {"Retry-After": str(retry_s)})

    def failed(self, source: str, device_id: str) -> None:
        self.by_source.get(source).drain()
        self.by_device.get(device_id).drain()


class ByteBudget:
    """Bytes of request bodies held at once over all connections (the declared length, or the
    limit when chunked, reserved before reading): past it, 503 instead of more memory."""

    def __init__(self, max_bytes: int):
        self.max_bytes, self.used = max_bytes, 0

    @contextlib.contextmanager
    def reserve(self, n: int) -> Iterator[None]:
        if self.used + n > self.max_bytes:
            raise Reject(503, "overloaded", "too many request bytes being received, retry later")
        self.used += n
        try:
            yield
        finally:
            self.used -= n


class StreamCounter:
    """Open WebSocket streams per device (a device over its cap is refused at the handshake)."""

    def __init__(self, per_device: int):
        self.per_device = per_device
        self.open: dict[str, int] = {}

    def acquire(self, device_id: str) -> None:
        n = self.open.get(device_id, 0)
        if n >= self.per_device:
            raise Reject(429, "too_many_streams", f"this device already has {n} open streams (at most "
                         f"{self.per_device}); close one first")
        self.open[device_id] = n + 1

    def release(self, device_id: str) -> None:
        n = self.open.get(device_id, 0) - 1
        if n <= 0:
            self.open.pop(device_id, None)
        else:
            self.open[device_id] = n


def frame_body_limit(row: registry.DeviceRow, json_body: bool, max_body: int) -> int:
    """Largest frame body this device can need, from its registered channel count and rate
    (the wire limits when not registered): checked before any decoding."""
    n_ch = len(row.channel_map) or wire.MAX_CHANNELS
    n_s = min(wire.MAX_SAMPLES, row.fs_hz or wire.MAX_SAMPLES)
    if json_body:
        need = JSON_FRAME_OVERHEAD_BYTES + n_ch * n_s * JSON_SAMPLE_BYTES
    else:
        need = wire.HEADER_SIZE + 64 + 2 * n_ch * n_s + wire.CRC_SIZE
    return min(max_body, need)

"""Pure parts of the gateway's limits: buckets, bounded tables, body limits, log redaction."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest import registry, wire
from ingest.gateway.errors import Reject
from ingest.gateway.limits import ByteBudget, FailedAuthLimiter, KeyedBuckets, StreamCounter, TokenBucket, frame_body_limit
from ingest.gateway.server import RedactingFilter, redact


def test_token_bucket_takes_bytes_and_reports_wait():
    b = TokenBucket(rate=1000.0, burst=5000.0)
    assert b.take(5000) and not b.take(1000)
    assert 0.5 < b.wait_s(1000) <= 1.0
    b.drain(10_000)
    assert b.tokens == 0.0


@given(st.lists(st.text(min_size=1, max_size=8), max_size=300), st.integers(1, 50))
def test_keyed_buckets_stay_bounded(keys, max_keys):
    kb = KeyedBuckets(1.0, 3.0, max_keys)
    for k in keys:
        kb.get(k)
        assert len(kb.buckets) <= max_keys
    if keys:
        assert kb.peek(keys[-1]) is not None  # the most recent key is kept


def test_failed_auth_limiter_per_source_and_per_device():
    lim = FailedAuthLimiter(rate_per_s=0.01, burst=3, max_keys=100)
    for i in range(3):
        lim.check("1.2.3.4", f"dev-{i}")
        lim.failed("1.2.3.4", f"dev-{i}")
    with pytest.raises(Reject) as ei:
        lim.check("1.2.3.4", "dev-new")  # this address is out of budget, whatever the device
    assert ei.value.status == 429 and ei.value.reason == "too_many_failures"
    assert int(ei.value.headers["Retry-After"]) >= 1
    for i in range(3):
        lim.failed(f"10.0.0.{i}", "dev-target")
    with pytest.raises(Reject):
        lim.check("10.9.9.9", "dev-target")  # this device is out of budget, whatever the address
    lim.check("10.9.9.9", "dev-other")


def test_byte_budget_refuses_past_the_total_and_releases():
    budget = ByteBudget(1000)
    with budget.reserve(600):
        with pytest.raises(Reject) as ei:
            with budget.reserve(500):
                pass
        assert (ei.value.status, ei.value.reason) == (503, "overloaded")
        with budget.reserve(400):
            assert budget.used == 1000
    assert budget.used == 0
    with pytest.raises(RuntimeError):
        with budget.reserve(1000):
            raise RuntimeError("handler failed")
    assert budget.used == 0


def test_stream_counter():
    sc = StreamCounter(per_device=2)
    sc.acquire("a")
    sc.acquire("a")
    with pytest.raises(Reject) as ei:
        sc.acquire("a")
    assert (ei.value.status, ei.value.reason) == (429, "too_many_streams")
    sc.acquire("b")
    sc.release("a")
    sc.acquire("a")
    sc.release("a"), sc.release("a"), sc.release("b")
    assert sc.open == {}


def _row(n_ch: int, fs_hz: int | None) -> registry.DeviceRow:
    cmap = [{"channel": i, "muscle": "zygomaticus", "side": "L"} for i in range(n_ch)]
    return registry.DeviceRow("dev-x", "c", None, fs_hz, cmap, None, "active")


@given(st.integers(1, 64), st.sampled_from([250, 1000, 2000, 10_000]), st.integers(1, 8192))
def test_frame_body_limit_admits_every_valid_frame(n_ch, fs_hz, n_s):
    n_s = min(n_s, fs_hz, 300)
    f = wire.Frame(device_id="d" * 64, seq=wire.SEQ_MAX, t_us=wire.T_MAX_US - 1, fs_hz=fs_hz, scale_uv=0.1,
                   samples=np.full((n_ch, n_s), -32768, dtype=np.int16), session_id=None)
    row = _row(n_ch, fs_hz)
    assert len(wire.encode_frame(f)) <= frame_body_limit(row, False, 10**9)
    assert len(wire.encode_frame_json(f)) <= frame_body_limit(row, True, 10**9)


def test_frame_body_limit_refuses_more_channels_than_registered():
    row = _row(2, 2000)
    big = wire.Frame(device_id="dev-x", seq=1, t_us=wire.T_MIN_US, fs_hz=2000, scale_uv=0.1,
                     samples=np.zeros((64, 2000), dtype=np.int16), session_id=None)
    assert len(wire.encode_frame(big)) > frame_body_limit(row, False, 1_048_576)
    assert frame_body_limit(_row(0, None), False, 1_048_576) == 1_048_576  # unregistered: the wire limits


@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-", min_size=8,
               max_size=60), st.sampled_from(["", "\\x00", "\\x7f", "junk"]))
def test_redact_removes_tokens(token, tail):
    """Secrets are url-safe base64 (secrets.token_urlsafe); whatever follows them on the line goes too."""
    for line in (f"Authorization: Bearer {token}{tail}", f"b'authorization: bearer {token}{tail}'",
                 f"Invalid header value char: 'Bearer {token}{tail}' (400)"):
        assert token not in redact(line)


def test_redacting_filter_covers_tracebacks():
    rec = logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1, "bad %s", ("Bearer s3cr3t-token",), None)
    try:
        raise ValueError("Invalid header value: b'Authorization: Bearer s3cr3t-token\\x00'")
    except ValueError:
        import sys

        rec.exc_info = sys.exc_info()
    RedactingFilter().filter(rec)
    text = logging.Formatter().format(rec)
    assert "s3cr3t" not in text and "<redacted>" in text


def test_decoder_worker_process_errors_and_restart():
    """Large bodies are decoded in a worker process: wire errors come back as WireError, and a
    killed worker is replaced (that request gets 503, the next one works)."""
    import asyncio
    import json
    import os
    import signal

    from ingest.gateway.decode import Decoder

    body = json.dumps({"seq": 1, "t_us": wire.T_MIN_US, "battery_pct": 5}).encode()

    async def run():
        d = Decoder(1)
        await d.start()
        try:
            assert (await d.run("http", wire.KIND_TELEMETRY, body, True, "dev-1")).battery_pct == 5
            with pytest.raises(wire.WireError) as ei:
                await d.run("http", wire.KIND_TELEMETRY, b"{nope", True, "dev-1")
            assert (ei.value.reason, ei.value.status) == ("bad_json", 400)
            for pid in list(d.pool._processes):
                os.kill(pid, signal.SIGKILL)
            await asyncio.sleep(0.3)
            with pytest.raises(Reject) as er:
                await d.run("http", wire.KIND_TELEMETRY, body, True, "dev-1")
            assert er.value.status == 503
            kind, item = await d.run("ws", body, False, "dev-1")
            assert (kind, item.seq) == (wire.KIND_TELEMETRY, 1)
        finally:
            d.stop()

    asyncio.run(run())

"""The gateway under attack (each case found by an attacker test against the running gateway):
failed-auth floods, heavy JSON from one device, slow and excess connections, WebSocket floods,
secrets in malformed headers, and the admin listener kept off the device port."""

from __future__ import annotations

import asyncio
import json
import re
import select
import socket
import statistics
import multiprocessing
import time
from concurrent.futures import ThreadPoolExecutor

import aiohttp
import numpy as np
import pytest
import requests

from ingest import wire
from tests.ingest.conftest import GatewayProc, read_topic
from tests.ingest.test_gateway import T0, frame

pytestmark = pytest.mark.stack
CMAP2 = [{"channel": 0, "muscle": "zygomaticus", "side": "L"}, {"channel": 1, "muscle": "zygomaticus", "side": "R"}]
CMAP64 = [{"channel": i, "muscle": f"m{i // 2}", "side": "LR"[i % 2]} for i in range(64)]


@pytest.fixture(scope="module")
def limited(settings):
    gw = GatewayProc(settings, MIMETIC_GATEWAY_HEADER_TIMEOUT_S="1", MIMETIC_GATEWAY_BODY_TIMEOUT_S="1",
                     MIMETIC_GATEWAY_WS_PER_DEVICE="4", MIMETIC_GATEWAY_WS_IDLE_S="1.5",
                     MIMETIC_GATEWAY_MAX_CONNECTIONS="250", MIMETIC_GATEWAY_AUTH_FAIL_BURST="1000")
    try:
        gw.wait_healthy()
        yield gw
    finally:
        gw.stop()


def _metric(gw: GatewayProc, name: str) -> float:
    text = requests.get(gw.admin_url + "/metrics", timeout=5).text
    m = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def _post(gw, dev, secret, body, ct=wire.CT_FRAME, path="frames", session=requests):
    return session.post(f"{gw.url}/v1/devices/{dev}/{path}", data=body, timeout=30,
                        headers={"Authorization": f"Bearer {secret}", "Content-Type": ct})


def test_wrong_secret_flood_is_bounded_and_unknown_looks_like_wrong(settings, new_device):
    gw = GatewayProc(settings, MIMETIC_GATEWAY_AUTH_FAIL_PER_S="0.2", MIMETIC_GATEWAY_AUTH_FAIL_BURST="5")
    try:
        gw.wait_healthy()
        dev, secret = new_device()
        other, other_secret = new_device()
        body = wire.encode_frame(frame(dev, 1))
        assert _post(gw, dev, secret, body).status_code == 202  # its secret is now known good
        wrong = _post(gw, dev, "not-the-secret-0", body)
        unknown = _post(gw, "no-such-device-1", "not-the-secret-1", body)
        assert (wrong.status_code, wrong.json()) == (unknown.status_code, unknown.json()) == (
            401, {"error": "unauthorized", "detail": "unknown device or wrong secret"})
        t_wrong, t_unknown = [], []
        for i in range(2):  # timing: a fresh wrong secret costs a KDF, an unknown device waits as long
            t = time.monotonic()
            _post(gw, dev, f"wrong-{i}", body)
            t_wrong.append(time.monotonic() - t)
            t = time.monotonic()
            _post(gw, f"no-such-device-{i + 2}", f"wrong-{i}", body)
            t_unknown.append(time.monotonic() - t)
        assert abs(statistics.median(t_wrong) - statistics.median(t_unknown)) < 0.15
        kdf_before = _metric(gw, "mimetic_gateway_auth_kdf_total")
        with ThreadPoolExecutor(8) as pool:
            flood = list(pool.map(lambda i: _post(gw, dev, f"guess-{i}", body), range(120)))
            unknown_flood = list(pool.map(lambda i: _post(gw, f"guess-dev-{i}", "x", body), range(40)))
        codes = [r.status_code for r in flood + unknown_flood]
        assert set(codes) <= {401, 429} and codes.count(429) >= 150
        limited = next(r for r in flood if r.status_code == 429)
        assert limited.json()["error"] == "too_many_failures" and int(limited.headers["Retry-After"]) >= 1
        # at most the burst (already spent by the six failures above) plus the refill ran scrypt
        assert _metric(gw, "mimetic_gateway_auth_kdf_total") - kdf_before <= 3
        # the device whose secret is known good keeps working through the flood
        assert _post(gw, dev, secret, wire.encode_frame(frame(dev, 2))).status_code == 202
        # a new secret from a flooded address waits: 429 before any KDF (documented price)
        assert _post(gw, other, other_secret, wire.encode_frame(frame(other, 1))).status_code == 429
        assert [wire.decode_frame(v).seq for _, v, _ in read_topic(settings, "frame", dev)] == [1, 2]
    finally:
        gw.stop()


def _json_frame_bytes(dev: str, seq: int, nch: int, ns: int) -> bytes:
    rng = np.random.default_rng(seq)
    samples = rng.integers(-32768, 32767, (nch, ns)).tolist()
    return json.dumps({"device_id": dev, "seq": seq, "t_us": T0 + seq * 100_000,
                       "fs_hz": 10_000, "scale_uv": 0.1, "samples": samples}).encode()


def _attack(url, dev, secret, body, key, stop, out, rate_per_s=20.0) -> None:
    got = []
    t_next = time.monotonic()
    with requests.Session() as s:
        while not stop.is_set():
            t_next += 1 / rate_per_s
            time.sleep(max(0.0, t_next - time.monotonic()))
            try:
                got.append(s.post(f"{url}/v1/devices/{dev}/frames", data=body, timeout=30,
                                  headers={"Authorization": f"Bearer {secret}", "Content-Type": wire.CT_JSON}
                                  ).status_code)
            except requests.ConnectionError:
                got.append(0)  # closed by the gateway while still uploading
    out.put((key, got))


def test_heavy_json_from_one_device_does_not_stall_others(limited, settings, new_device):
    """Three clients post ~1 MiB 64-channel JSON frames at 20 requests/s each (two for a device registered
    with 64 channels: byte-rate limited, decoded in a worker process; one with 2: refused by
    size before decoding) while an honest device's p50 latency stays under 50 ms (it was
    ~530 ms before the limits)."""
    big_dev, big_secret = new_device(channel_map=CMAP64, fs_hz=10_000)
    small_dev, small_secret = new_device(channel_map=CMAP2, fs_hz=10_000)
    honest, honest_secret = new_device(channel_map=CMAP2, fs_hz=2000)
    big = _json_frame_bytes(big_dev, 1, 64, 2250)
    assert 900_000 < len(big) <= settings.gateway_max_body_bytes
    misfit = _json_frame_bytes(small_dev, 1, 64, 2250)
    ctx = multiprocessing.get_context("fork")  # attackers in processes: the client's GIL is not measured
    stop = ctx.Event()
    out = ctx.Queue()
    procs = [ctx.Process(target=_attack, args=(limited.url, *a, stop, out)) for a in
             ((big_dev, big_secret, big, "big"), (big_dev, big_secret, big, "big"),
              (small_dev, small_secret, misfit, "small"))]
    def honest_round(s: requests.Session, seqs: range) -> tuple[float, float]:
        """p50 of the honest device's 202s (through Kafka) and of its 415s (the event loop alone)."""
        lat, lat_loop = [], []
        for seq in seqs:
            t0 = time.monotonic()
            r = _post(limited, honest, honest_secret, wire.encode_frame(frame(honest, seq)), session=s)
            lat.append(time.monotonic() - t0)
            assert r.status_code == 202
            t0 = time.monotonic()
            assert _post(limited, honest, honest_secret, b"{}", ct="text/plain", session=s).status_code == 415
            lat_loop.append(time.monotonic() - t0)
            time.sleep(0.05)
        return statistics.median(lat), statistics.median(lat_loop)

    with requests.Session() as s:
        base, base_loop = honest_round(s, range(1, 21))
        for p in procs:
            p.start()
        t_attack = time.monotonic()
        try:
            time.sleep(0.5)
            p50, p50_loop = honest_round(s, range(21, 61))
        finally:
            stop.set()
            codes: dict[str, list[int]] = {"big": [], "small": []}
            for _ in procs:
                key, got = out.get(timeout=60)
                codes[key] += got
            for p in procs:
                p.join(10)
            attack_s = time.monotonic() - t_attack
    print(f"honest p50 {base * 1000:.1f} ms alone, {p50 * 1000:.1f} ms under attack (loop only: "
          f"{base_loop * 1000:.1f} -> {p50_loop * 1000:.1f} ms); attackers {len(codes['big'])} big "
          f"({codes['big'].count(202)} accepted), {len(codes['small'])} misfit")
    # 50 ms on a quiet machine; on a loaded shared one, at most 3x this run's own baseline
    # (before the limits: 9 ms -> 532 ms)
    assert p50 < max(0.05, 3 * base) and p50_loop < max(0.05, 3 * base_loop)
    assert set(codes["big"]) <= {202, 429}
    assert set(codes["small"]) <= {413, 0} and 413 in codes["small"]
    accepted = codes["big"].count(202)
    # the byte budget: 8 MiB burst + 4 MiB/s (the defaults); a loaded machine may send less
    budget = (8 + 4 * attack_s) * 1_048_576
    assert 0 < accepted * len(big) <= budget
    if len(codes["big"]) * len(big) > budget + len(big):
        assert 429 in codes["big"], "offered more than the byte budget, yet nothing was refused"


def _raw(gw: GatewayProc) -> socket.socket:
    return socket.create_connection(("127.0.0.1", gw.port), timeout=10)


def _closed_within(sock: socket.socket, seconds: float, drip: bytes = b"") -> tuple[bool, bytes]:
    """Drip one byte every 0.2 s; (closed by the server in time, what it answered)."""
    got = b""
    deadline = time.monotonic() + seconds
    sock.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            if drip:
                sock.sendall(drip)
            chunk = sock.recv(65536)
            if not chunk:
                return True, got
            got += chunk
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return True, got
    return False, got


def test_slow_headers_and_slow_bodies_are_cut(limited, new_device):
    dev, secret = new_device()
    slow_head = [_raw(limited) for _ in range(6)]
    for s in slow_head:
        s.sendall(b"POST /v1/devices/" + dev.encode() + b"/frames HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    slow_body = [_raw(limited) for _ in range(6)]
    for s in slow_body:
        s.sendall(f"POST /v1/devices/{dev}/frames HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {secret}\r\n"
                  f"Content-Type: {wire.CT_FRAME}\r\nContent-Length: 5000\r\n\r\n".encode())
    t0 = time.monotonic()
    results = [_closed_within(s, 6.0, drip=b"a") for s in slow_head + slow_body]
    assert time.monotonic() - t0 < 6 * 12  # sanity
    assert all(closed for closed, _ in results), results
    for _, answer in results[6:]:
        assert answer.startswith(b"HTTP/1.1 408") and b"body_timeout" in answer
    for s in slow_head + slow_body:
        s.close()
    assert requests.get(limited.admin_url + "/readyz", timeout=5).status_code == 200


def test_connection_cap(limited, new_device):
    socks = []
    try:
        for _ in range(270):
            socks.append(_raw(limited))
        refused, closed, waiting = 0, 0, list(socks)
        deadline = time.monotonic() + 3  # the accepted ones are closed after the 1 s header timeout
        while waiting and time.monotonic() < deadline:
            readable, _, _ = select.select(waiting, [], [], 0.2)
            for s in readable:
                waiting.remove(s)
                try:
                    data = s.recv(4096)
                except ConnectionResetError:
                    data = b""
                refused += data.startswith(b"HTTP/1.1 503")
                closed += not data
        assert refused >= 15 and refused + closed == len(socks), (refused, closed)
    finally:
        for s in socks:
            s.close()
    dev, secret = new_device()
    deadline = time.monotonic() + 10
    while (r := _post(limited, dev, secret, wire.encode_frame(frame(dev, 1)))).status_code != 202:
        assert time.monotonic() < deadline, r.text
        time.sleep(0.2)


def test_websocket_cap_per_device_and_idle_close(limited, new_device):
    dev, secret = new_device()
    other, other_secret = new_device()
    url = limited.url.replace("http", "ws")

    async def run():
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
            async def connect(d, sec):
                try:
                    return await s.ws_connect(f"{url}/v1/devices/{d}/stream",
                                              headers={"Authorization": f"Bearer {sec}"})
                except aiohttp.WSServerHandshakeError as exc:
                    return exc.status

            got = await asyncio.gather(*(connect(dev, secret) for _ in range(200)))
            opened = [w for w in got if not isinstance(w, int)]
            refused = [w for w in got if isinstance(w, int)]
            ws_other = await connect(other, other_secret)
            assert not isinstance(ws_other, int)
            await ws_other.send_bytes(wire.encode_frame(frame(other, 1)))
            ack = json.loads((await ws_other.receive(timeout=10)).data)
            t0 = time.monotonic()
            closing = await opened[0].receive(timeout=10)  # idle: closed by the gateway
            idle_s = time.monotonic() - t0
            for w in opened + [ws_other]:
                await w.close()
            return len(opened), refused, ack, closing, idle_s

    n_open, refused, ack, closing, idle_s = asyncio.run(run())
    assert n_open == 4 and refused == [429] * 196
    assert ack["status"] == 202
    assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED) and closing.data == 4408
    assert idle_s < 3
    assert requests.get(limited.admin_url + "/readyz", timeout=5).status_code == 200


@pytest.mark.parametrize("junk", [b"\x00", b"\x7f", b"\x01zz", b"\rX", b"\x00\r\n\r\n"])
def test_control_characters_after_the_secret_leak_nothing(limited, new_device, junk):
    dev, secret = new_device()
    s = _raw(limited)
    s.sendall(f"POST /v1/devices/{dev}/frames HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n".encode()
              + b"Authorization: Bearer " + secret.encode() + junk + b"TAILMARK\r\n\r\n")
    _, answer = _closed_within(s, 1.5)
    s.close()
    assert re.match(rb"HTTP/1\.[01] 4\d\d ", answer), answer
    assert secret.encode() not in answer and b"TAILMARK" not in answer
    assert b"aiohttp" not in answer.lower() and b"python" not in answer.lower()
    time.sleep(0.2)
    assert secret not in limited.log.read_text(errors="replace")


def test_no_server_version_and_admin_port_separate(limited, new_device):
    dev, secret = new_device()
    r = _post(limited, dev, secret, wire.encode_frame(frame(dev, 1)))
    assert r.status_code == 202 and r.headers["Server"] == "mimetic-gateway"
    bad = _post(limited, dev, secret, b"x", ct="text/plain")
    assert bad.status_code == 415 and bad.headers["Server"] == "mimetic-gateway"
    s = _raw(limited)  # the WebSocket handshake's answer too
    s.sendall(f"GET /v1/devices/{dev}/stream HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
              f"Authorization: Bearer {secret}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(4096)
    s.close()
    assert head.startswith(b"HTTP/1.1 101") and b"\r\nServer: mimetic-gateway\r\n" in head, head
    assert requests.get(limited.admin_url + "/livez", timeout=5).headers["Server"] == "mimetic-gateway"
    for path in ("/healthz", "/metrics", "/readyz", "/livez"):
        assert requests.get(limited.url + path, timeout=5).status_code == 404
    assert requests.get(limited.admin_url + "/livez", timeout=5).json()["status"] == "ok"
    ready = requests.get(limited.admin_url + "/readyz", timeout=5).json()
    assert ready["kafka"] and ready["db"]
    assert requests.get(limited.admin_url + "/healthz", timeout=5).status_code == 200
    assert "mimetic_gateway_auth_kdf_total" in requests.get(limited.admin_url + "/metrics", timeout=5).text
    doc = requests.get(limited.url + "/v1/openapi.json", timeout=5)
    assert doc.status_code == 200 and doc.json()["openapi"].startswith("3.1")
    not_ws = requests.get(f"{limited.url}/v1/devices/{dev}/stream", headers={"Authorization": f"Bearer {secret}"})
    assert not_ws.status_code == 426 and not_ws.json()["error"] == "upgrade_required"

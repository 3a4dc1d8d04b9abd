"""The gateway against the real Kafka and registry: round trips, refusals, marks, metrics, fuzz."""

from __future__ import annotations

import asyncio
import json
import random
import struct
import time
import uuid
import zlib

import aiohttp
import numpy as np
import psycopg
import pytest
import requests

from ingest import registry, wire
from tests.ingest.conftest import GatewayProc, read_topic

pytestmark = pytest.mark.stack
T0 = (wire.now_us() // 1_000_000 - 3600) * 1_000_000  # an hour ago: inside the device-clock rule
CMAP = [{"channel": 0, "muscle": "zygomaticus", "side": "L"}, {"channel": 1, "muscle": "zygomaticus", "side": "R"}]


def frame(dev: str, seq: int, nch: int = 2, ns: int = 100, fs: int = 2000, **kw) -> wire.Frame:
    rng = np.random.default_rng(seq)
    return wire.Frame(device_id=dev, seq=seq, t_us=T0 + seq * 50_000, fs_hz=fs, scale_uv=0.1,
                      samples=rng.integers(-3000, 3000, (nch, ns), dtype=np.int16), session_id=uuid.UUID(int=5), **kw)


def post(gw, dev, secret, path, body, ct):
    h = {"Content-Type": ct}
    if secret is not None:
        h["Authorization"] = f"Bearer {secret}"
    return requests.post(f"{gw.url}/v1/devices/{dev}/{path}", data=body, headers=h, timeout=30)


def telemetry(dev, seq):
    return wire.Telemetry(device_id=dev, seq=seq, t_us=T0 + seq, battery_pct=77.5, temperature_c=33.9,
                          impedance_kohm=[10.5, 12.0], stim_current_ua=150.0, signal_strength_dbm=-61,
                          firmware_errors=["E1"], session_id=uuid.UUID(int=5))


def events(dev):
    sid = str(uuid.UUID(int=5))
    raw = [{"type": "session_start", "session_id": sid, "therapy_type": "microcurrent", "fs_hz": 2000,
            "channel_map": CMAP, "stimulation": {"current_limit_ua": 300, "current_ua": 200, "frequency_hz": 20,
                                                 "pulse_width_us": 500}},
           {"type": "task_start", "session_id": sid, "task": "smile", "repetition": 1},
           {"type": "task_stop", "session_id": sid, "task": "smile", "repetition": 1},
           {"type": "patient_report", "session_id": sid, "discomfort": 2, "skin_reaction": "none"},
           {"type": "session_end", "session_id": sid}]
    return [wire.event_from_json({**e, "seq": i + 1, "t_us": T0 + i}, dev) for i, e in enumerate(raw)]


def test_http_round_trip(gateway, settings, new_device):
    dev, secret = new_device(channel_map=CMAP, fs_hz=2000)
    frames = [frame(dev, s) for s in range(1, 6)]
    for f in frames[:3]:
        r = post(gateway, dev, secret, "frames", wire.encode_frame(f), wire.CT_FRAME)
        assert r.status_code == 202, r.text
        assert r.json()["seq"] == f.seq and r.json()["dup"] is False
    for f in frames[3:]:
        r = post(gateway, dev, secret, "frames", wire.encode_frame_json(f), "application/json")
        assert r.status_code == 202, r.text
    tel = [telemetry(dev, s) for s in (1, 2)]
    for t in tel:
        body = json.loads(wire.encode_model(t))
        del body["device_id"]  # filled from the URL
        assert post(gateway, dev, secret, "telemetry", json.dumps(body), "application/json").status_code == 202
    evs = events(dev)
    for e in evs:
        assert post(gateway, dev, secret, "events", wire.encode_model(e), "application/json").status_code == 202

    got = read_topic(settings, "frame", dev)
    assert [k for k, _, _ in got] == [dev.encode()] * 5
    assert [v for _, v, _ in got] == [wire.encode_frame(f) for f in frames]  # byte for byte
    for (_, v, h), f in zip(got, frames):
        g, meta = wire.decode_frame_record(v, h)
        assert g == f and meta.kind == "frame" and meta.source == "http" and not meta.dup
        assert meta.content_type == wire.CT_FRAME_V and meta.received_at_us > T0
    assert [wire.decode_telemetry_record(v, h)[0] for _, v, h in read_topic(settings, "telemetry", dev)] == tel
    assert [wire.decode_record(v, h)[0] for _, v, h in read_topic(settings, "event", dev)] == evs


async def _ws_session(url, dev, secret, msgs):
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(f"{url.replace('http', 'ws')}/v1/devices/{dev}/stream",
                                headers={"Authorization": f"Bearer {secret}"}) as ws:
            for m in msgs:
                await (ws.send_bytes(m) if isinstance(m, bytes) else ws.send_str(m))
            acks = [json.loads((await ws.receive(timeout=30)).data) for _ in msgs]
            return acks


def test_websocket_round_trip(gateway, settings, new_device):
    dev, secret = new_device()
    frames = [frame(dev, s) for s in range(1, 41)]
    tel = telemetry(dev, 1)
    evs = events(dev)
    msgs = [wire.encode_frame(f) for f in frames[:20]]
    msgs += [json.dumps({"kind": "telemetry", **json.loads(wire.encode_model(tel))})]
    msgs += [json.dumps({"kind": "event", **json.loads(wire.encode_model(e))}) for e in evs]
    msgs += [json.dumps({"kind": "frame", **f.to_json()}) for f in frames[20:]]
    msgs += [b"garbage", wire.encode_frame(frames[0])]  # a refusal and a duplicate, in order
    acks = asyncio.run(_ws_session(gateway.url, dev, secret, msgs))
    assert [a["i"] for a in acks] == list(range(1, len(msgs) + 1))
    assert all(a["status"] == 202 for a in acks[:-2])
    assert acks[-2]["status"] == 400 and acks[-2]["error"] == "truncated"
    # marked dup if seq 1's Kafka ack was already processed, else resent (acks are pipelined)
    assert acks[-1]["status"] == 202 and (acks[-1]["dup"] or acks[-1]["resent"]) and acks[-1]["seq"] == 1
    got = read_topic(settings, "frame", dev)
    assert [wire.decode_frame(v) for _, v, _ in got] == frames + [frames[0]]
    assert [wire.parse_headers(h).dup or wire.parse_headers(h).resent for _, _, h in got] == [False] * 40 + [True]
    assert all(wire.parse_headers(h).source == "ws" for _, _, h in got)
    assert [wire.decode_record(v, h)[0] for _, v, h in read_topic(settings, "event", dev)] == evs
    assert [wire.decode_record(v, h)[0] for _, v, h in read_topic(settings, "telemetry", dev)] == [tel]


def test_credentials(gateway, settings, new_device):
    dev, secret = new_device()
    body = wire.encode_frame(frame(dev, 1))
    r = post(gateway, dev, None, "frames", body, wire.CT_FRAME)
    assert r.status_code == 401 and r.json()["error"] == "missing_credentials" and "Bearer" in r.headers["WWW-Authenticate"]
    for bad in ("wrong", secret[:-1], secret + "x"):
        r = post(gateway, dev, bad, "frames", body, wire.CT_FRAME)
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    r = requests.post(f"{gateway.url}/v1/devices/{dev}/frames", data=body,
                      headers={"Authorization": f"Basic {secret}", "Content-Type": wire.CT_FRAME})
    assert r.status_code == 401
    other, other_secret = new_device()
    assert post(gateway, dev, other_secret, "frames", body, wire.CT_FRAME).status_code == 401
    wrong = post(gateway, dev, other_secret, "frames", body, wire.CT_FRAME)
    unknown = post(gateway, "nosuch-device", secret, "frames", body, wire.CT_FRAME)
    assert (unknown.status_code, unknown.json()) == (wrong.status_code, wrong.json())  # ids cannot be probed
    with pytest.raises(aiohttp.WSServerHandshakeError) as ei:
        asyncio.run(_ws_session(gateway.url, dev, "wrong", [body]))
    assert ei.value.status == 401
    assert post(gateway, dev, secret, "frames", body, wire.CT_FRAME).status_code == 202
    with psycopg.connect(settings.db_dsn(), autocommit=True) as conn:
        assert registry.revoke_device(conn, dev)
    deadline = time.monotonic() + 15  # the cache TTL is 1 s in these tests
    while True:
        r = post(gateway, dev, secret, "frames", wire.encode_frame(frame(dev, 2)), wire.CT_FRAME)
        if r.status_code == 403 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert r.status_code == 403 and r.json()["error"] == "device_revoked"
    accepted_before_revocation = {wire.decode_frame(v).seq for _, v, _ in read_topic(settings, "frame", dev)}
    # only the one good request (and possibly seq 2 accepted before the revocation was seen) got through
    assert 1 in accepted_before_revocation and accepted_before_revocation <= {1, 2}
    with psycopg.connect(settings.db_dsn(), autocommit=True) as conn:
        new_secret = registry.add_device(conn, clinic_id="test-clinic", device_id=dev, rotate=True, kdf_n=2**12)
    deadline = time.monotonic() + 15
    while post(gateway, dev, new_secret, "frames", wire.encode_frame(frame(dev, 3)), wire.CT_FRAME).status_code != 202:
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert post(gateway, dev, secret, "frames", wire.encode_frame(frame(dev, 4)), wire.CT_FRAME).status_code == 401


def _reseal(b: bytes) -> bytes:
    return b[:-4] + struct.pack("<I", zlib.crc32(b[:-4]))


def test_malformed_inputs_produce_nothing(gateway, settings, new_device):
    dev, secret = new_device(channel_map=CMAP, fs_hz=2000)
    good = wire.encode_frame(frame(dev, 1))
    fj = frame(dev, 1).to_json()
    nan_json = json.dumps({**fj, "samples": [[1, 2], [3, 4]]}).replace("[[1, 2]", "[[NaN, 2]")
    cases = [
        ("frames", good[:40], wire.CT_FRAME, 400, "truncated"),
        ("frames", good[:-100], wire.CT_FRAME, 400, "truncated"),
        ("frames", _reseal(good[:4] + b"\x09" + good[5:]), wire.CT_FRAME, 422, "unsupported_version"),
        ("frames", _reseal(good[:-4] + b"\x00\x00" + b"CRC!"), wire.CT_FRAME, 400, "count_mismatch"),
        ("frames", _reseal(good[:24] + struct.pack("<I", 100_000) + good[28:]), wire.CT_FRAME, 422, "bad_rate"),
        ("frames", _reseal(good[:32] + struct.pack("<f", float("nan")) + good[36:]), wire.CT_FRAME, 422, "nan"),
        ("frames", nan_json, "application/json", 422, "nan"),
        ("frames", json.dumps({**fj, "n_samples": 7}), "application/json", 400, "count_mismatch"),
        ("frames", json.dumps({**fj, "fs_hz": 3}), "application/json", 422, "bad_rate"),
        ("frames", wire.encode_frame(frame(dev, 1, nch=3)), wire.CT_FRAME, 422, "channel_count_mismatch"),
        ("frames", wire.encode_frame(frame(dev, 1, fs=1000)), wire.CT_FRAME, 422, "rate_mismatch"),
        ("frames", wire.encode_frame(frame("someone-else", 1)), wire.CT_FRAME, 422, "device_id_mismatch"),
        ("frames", b"\x00" * (settings.gateway_max_body_bytes + 10), wire.CT_FRAME, 413, "body_too_large"),
        ("frames", good, "text/plain", 415, "unsupported_media_type"),
        ("frames", b"", wire.CT_FRAME, 400, "empty_body"),
        ("telemetry", b"x" * 70_000, "application/json", 413, "body_too_large"),
        ("telemetry", json.dumps({"seq": 1, "t_us": T0, "battery_pct": 150}), "application/json", 422, "invalid_telemetry"),
        ("telemetry", json.dumps({"seq": 1, "t_us": T0, "impedance_kohm": [1, 2, 3]}), "application/json", 422,
         "channel_count_mismatch"),
        ("telemetry", "{nope", "application/json", 400, "bad_json"),
        ("events", json.dumps({"type": "task_start", "seq": 1, "t_us": T0, "session_id": str(uuid.UUID(int=1)),
                               "task": "juggling", "repetition": 1}), "application/json", 422, "invalid_event"),
        ("events", json.dumps({"type": "patient_report", "seq": 1, "t_us": T0, "session_id": str(uuid.UUID(int=1)),
                               "discomfort": 11}), "application/json", 422, "invalid_event"),
    ]
    for path, body, ct, status, reason in cases:
        r = post(gateway, dev, secret, path, body, ct)
        assert (r.status_code, r.json()["error"]) == (status, reason), (path, reason, r.text)
    # unknown device with an otherwise valid frame
    assert post(gateway, "unknown-dev-x", secret, "frames", good, wire.CT_FRAME).status_code == 401
    for kind in ("frame", "telemetry", "event"):
        assert read_topic(settings, kind, dev) == []
    metrics = requests.get(gateway.admin_url + "/metrics").text
    assert 'mimetic_gateway_rejected_total{reason="truncated"}' in metrics


def test_duplicates_and_resends_are_marked(gateway, settings, new_device):
    dev, secret = new_device()
    f = frame(dev, 9)
    a = post(gateway, dev, secret, "frames", wire.encode_frame(f), wire.CT_FRAME).json()
    b = post(gateway, dev, secret, "frames", wire.encode_frame(f), wire.CT_FRAME).json()
    c = post(gateway, dev, secret, "frames", wire.encode_frame(frame(dev, 10, resent=True)), wire.CT_FRAME).json()
    assert (a["dup"], b["dup"], c["resent"]) == (False, True, True)
    got = [wire.decode_frame_record(v, h) for _, v, h in read_topic(settings, "frame", dev)]
    assert [(fr.seq, m.dup, m.resent) for fr, m in got] == [(9, False, False), (9, True, False), (10, False, True)]


def test_health_and_metrics(gateway):
    h = requests.get(gateway.admin_url + "/readyz").json()
    assert h["status"] == "ok" and h["kafka"] and h["db"]
    m = requests.get(gateway.admin_url + "/metrics")
    assert m.status_code == 200
    for name in ("mimetic_gateway_requests_total", "mimetic_gateway_request_seconds_bucket",
                 "mimetic_gateway_records_total", "mimetic_gateway_kafka_up"):
        assert name in m.text


def test_rate_limit(settings, new_device):
    gw = GatewayProc(settings, MIMETIC_GATEWAY_RATE_PER_S="0.2", MIMETIC_GATEWAY_RATE_BURST="3")
    try:
        gw.wait_healthy()
        dev, secret = new_device()
        codes = [post(gw, dev, secret, "frames", wire.encode_frame(frame(dev, s)), wire.CT_FRAME) for s in range(1, 7)]
        assert [r.status_code for r in codes[:3]] == [202] * 3
        limited = [r for r in codes[3:] if r.status_code == 429]
        assert limited and limited[0].json()["error"] == "rate_limited" and "Retry-After" in limited[0].headers
        assert len(read_topic(settings, "frame", dev)) == sum(r.status_code == 202 for r in codes)
    finally:
        gw.stop()


def test_fuzz_gateway(gateway, settings, new_device):
    """A few hundred random and mutated bodies over HTTP and WebSocket: no 5xx, only valid frames reach Kafka."""
    dev, secret = new_device()
    rnd = random.Random(1234)
    base = [wire.encode_frame(frame(dev, s)) for s in range(1, 6)]
    bodies = []
    for i in range(300):
        b = bytearray(rnd.choice(base))
        mode = i % 5
        if mode == 0:
            b = bytearray(rnd.randbytes(rnd.randint(0, 300)))
        elif mode == 1:
            for _ in range(rnd.randint(1, 4)):
                b[rnd.randrange(len(b))] = rnd.randrange(256)
        elif mode == 2:
            for _ in range(rnd.randint(1, 3)):
                b[rnd.randrange(wire.HEADER_SIZE)] = rnd.randrange(256)
            b = bytearray(_reseal(bytes(b)))  # valid CRC, mutated header: reaches the field checks
        elif mode == 3:
            b = b[: rnd.randrange(len(b))]
        bodies.append(bytes(b))
    statuses = []
    with requests.Session() as s:
        for b in bodies:
            r = s.post(f"{gateway.url}/v1/devices/{dev}/frames", data=b,
                       headers={"Authorization": f"Bearer {secret}", "Content-Type": wire.CT_FRAME})
            statuses.append(r.status_code)
            assert "error" in r.json() or r.status_code == 202
        for _ in range(60):
            junk = json.dumps(rnd.choice([{"seq": rnd.randint(-5, 5)}, [1, 2], {"t_us": "x"}, {"type": "session_end"},
                                          {"samples": [[rnd.random()]]}, "str", None, {"kind": "zzz"}]))
            for path in ("telemetry", "events", "frames"):
                r = s.post(f"{gateway.url}/v1/devices/{dev}/{path}", data=junk,
                           headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"})
                statuses.append(r.status_code)
    acks = asyncio.run(_ws_session(gateway.url, dev, secret, bodies[:150]))
    statuses += [a["status"] for a in acks]
    assert not [c for c in statuses if c >= 500 and c != 503]
    assert set(statuses) <= {202, 400, 413, 415, 422}
    accepted = sum(1 for c in statuses if c == 202)
    got = read_topic(settings, "frame", dev) + read_topic(settings, "telemetry", dev) + read_topic(settings, "event", dev)
    assert len(got) == accepted
    for _, v, h in got:
        item, meta = wire.decode_record(v, h)  # everything in Kafka is valid
        assert item.device_id == dev


def test_websocket_closed_after_revocation(gateway, settings, new_device):
    dev, secret = new_device()

    async def run():
        async with aiohttp.ClientSession() as s:
            async with s.ws_connect(f"{gateway.url.replace('http', 'ws')}/v1/devices/{dev}/stream",
                                    headers={"Authorization": f"Bearer {secret}"}) as ws:
                await ws.send_bytes(wire.encode_frame(frame(dev, 1)))
                first = json.loads((await ws.receive(timeout=30)).data)
                with psycopg.connect(settings.db_dsn(), autocommit=True) as conn:
                    registry.revoke_device(conn, dev)
                deadline = time.monotonic() + 15
                seq = 2
                while time.monotonic() < deadline:
                    await ws.send_bytes(wire.encode_frame(frame(dev, seq)))
                    ack = json.loads((await ws.receive(timeout=30)).data)
                    if ack["status"] != 202:
                        closing = await ws.receive(timeout=30)
                        return first, ack, closing, seq
                    seq += 1
                    await asyncio.sleep(0.3)
                raise AssertionError("revocation not noticed")

    first, ack, closing, last_seq = asyncio.run(run())
    assert first["status"] == 202
    assert ack["status"] == 403 and ack["error"] == "device_revoked"
    assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED) and closing.data == 4403
    seqs = [wire.decode_frame(v).seq for _, v, _ in read_topic(settings, "frame", dev)]
    assert last_seq not in seqs and seqs == list(range(1, last_seq))


def test_large_frames_http_and_ws(gateway, settings, new_device):
    """Half a megabyte per frame (32 ch x 8192 samples at 10 kHz), chunked upload included."""
    dev, secret = new_device()
    big = [frame(dev, s, nch=32, ns=8192, fs=10_000) for s in (1, 2, 3)]
    assert post(gateway, dev, secret, "frames", wire.encode_frame(big[0]), wire.CT_FRAME).status_code == 202

    def chunks(b: bytes):
        for i in range(0, len(b), 10_000):
            yield b[i:i + 10_000]

    r = requests.post(f"{gateway.url}/v1/devices/{dev}/frames", data=chunks(wire.encode_frame(big[1])),
                      headers={"Authorization": f"Bearer {secret}", "Content-Type": wire.CT_FRAME})
    assert r.status_code == 202, r.text
    acks = asyncio.run(_ws_session(gateway.url, dev, secret, [wire.encode_frame(big[2])]))
    assert acks[0]["status"] == 202
    assert [wire.decode_frame(v) for _, v, _ in read_topic(settings, "frame", dev)] == big
    too_big = b"".join([wire.encode_frame(big[0])] * 3)
    r = requests.post(f"{gateway.url}/v1/devices/{dev}/frames", data=chunks(too_big),
                      headers={"Authorization": f"Bearer {secret}", "Content-Type": wire.CT_FRAME})
    assert r.status_code == 413


def test_frame_under_body_limit_but_over_kafka_limit_is_413(gateway, settings, new_device):
    dev, secret = new_device()
    f = frame(dev, 1, nch=64, ns=8190, fs=10_000)  # ~1,048,400 bytes: under the 1 MiB body limit
    body = wire.encode_frame(f)
    assert len(body) <= settings.gateway_max_body_bytes
    r = post(gateway, dev, secret, "frames", body, wire.CT_FRAME)
    # near the broker's message.max.bytes (default 1,048,588 per batch): accepted, or 413 if the broker
    # refuses the size, never a 5xx and never a stuck "Kafka down"
    assert r.status_code in (202, 413), r.text
    if r.status_code == 413:
        assert r.json()["error"] == "body_too_large" and read_topic(settings, "frame", dev) == []
    assert requests.get(gateway.admin_url + "/readyz").json()["kafka"] is True

"""Ingest benchmarks: simulator synthesis speed, and gateway throughput/latency against the real Kafka.

`mimetic bench simulator` and `mimetic bench gateway` print and write JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import psycopg

from ingest import registry, wire
from ingest.runner import gateway_url
from ingest.send import gateway_connector
from ingest.simulator import DeviceStream
from mimetic.config import Settings


def _env() -> dict[str, Any]:
    return {"python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.machine()}


def bench_simulator(seconds: float = 5.0, fs_hz: int = 2000, channels: int = 8) -> dict[str, Any]:
    """Frames synthesised and encoded per second on one core (one device stream, 50 ms frames)."""
    s = DeviceStream("bench-sim", fs_hz=fs_hz, channels=channels, seed=1, fault_prob=0.3)
    it = s.frames()
    next(it)
    n = 0
    t0 = time.process_time()
    w0 = time.monotonic()
    while time.monotonic() - w0 < seconds:
        for _ in range(100):
            next(it)
        n += 100
    cpu = time.process_time() - t0
    fps = n / cpu
    frames_per_device_s = 1000 / 50
    return {"benchmark": "simulator", "fs_hz": fs_hz, "channels": channels, "frame_ms": 50, "frames": n,
            "cpu_s": round(cpu, 3), "frames_per_cpu_s": round(fps, 1),
            "samples_per_cpu_s": round(fps * fs_hz * channels / frames_per_device_s, 0),
            "realtime_devices_per_core": round(fps / frames_per_device_s, 1), "env": _env()}


async def _bench_gateway(s: Settings, devices: int, seconds: float, transport: str, window: int,
                         secrets: dict[str, str], rate: float = 0.0) -> dict[str, Any]:
    base = gateway_url(s)
    frames = {d: [wire.encode_frame(wire.Frame(device_id=d, seq=i + 1, t_us=wire.now_us(), fs_hz=2000,
                                               scale_uv=0.1, samples=np.random.default_rng(i).integers(
                                                   -2000, 2000, (8, 100), dtype=np.int16)))
                  for i in range(200)] for d in secrets}
    lat: list[float] = []
    counts = {"ok": 0, "other": 0}
    go = asyncio.Event()  # all devices connected and authenticated (scrypt paid) before the clock starts
    ready = {"n": 0}
    stop_at = float("inf")

    async def arrive() -> None:
        ready["n"] += 1
        if ready["n"] == len(secrets):
            nonlocal stop_at
            stop_at = time.monotonic() + seconds
            go.set()
        await go.wait()

    async def ws_device(http: aiohttp.ClientSession, dev: str) -> None:
        url = base.replace("http", "ws", 1) + f"/v1/devices/{dev}/stream"
        async with http.ws_connect(url, headers={"Authorization": f"Bearer {secrets[dev]}"}) as ws:
            await arrive()
            sent_at: list[float] = []
            sem = asyncio.Semaphore(window)

            async def reader() -> None:
                k = 0
                async for msg in ws:
                    a = json.loads(msg.data)
                    lat.append(time.monotonic() - sent_at[k])
                    k += 1
                    counts["ok" if a["status"] == 202 else "other"] += 1
                    sem.release()
                    if k == len(sent_at) and time.monotonic() > stop_at:
                        return

            rt = asyncio.create_task(reader())
            i = 0
            t_first = time.monotonic() + np.random.default_rng(len(dev) + hash(dev) % 1000).uniform(0, 0.05)
            while time.monotonic() < stop_at:
                if rate > 0:
                    delay = t_first + i / rate - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                await sem.acquire()
                sent_at.append(time.monotonic())
                await ws.send_bytes(frames[dev][i % 200])
                i += 1
            await asyncio.wait_for(rt, timeout=30)

    async def http_device(http: aiohttp.ClientSession, dev: str) -> None:
        url = f"{base}/v1/devices/{dev}/frames"
        h = {"Authorization": f"Bearer {secrets[dev]}", "Content-Type": wire.CT_FRAME}
        async with http.post(url, data=frames[dev][0], headers=h) as r:  # warm-up: authenticate once
            await r.read()
        await arrive()
        i = 1

        async def one() -> None:
            nonlocal i
            while time.monotonic() < stop_at:
                body = frames[dev][i % 200]
                i += 1
                t = time.monotonic()
                async with http.post(url, data=body, headers=h) as r:
                    await r.read()
                    lat.append(time.monotonic() - t)
                    counts["ok" if r.status == 202 else "other"] += 1

        await asyncio.gather(*(one() for _ in range(window)))

    async with aiohttp.ClientSession(connector=gateway_connector(s.gateway_ca_file, limit=0)) as http:
        fn = ws_device if transport == "ws" else http_device
        await asyncio.gather(*(fn(http, d) for d in secrets))
    elapsed = seconds + max(0.0, time.monotonic() - stop_at)  # includes draining the last acks
    q = np.percentile(np.array(lat) * 1000, [50, 95, 99]) if lat else [float("nan")] * 3
    return {"benchmark": "gateway", "transport": transport, "devices": devices, "window_per_device": window,
            "offered_frames_per_s_per_device": rate or "unbounded",
            "seconds": round(elapsed, 2), "accepted": counts["ok"], "other_status": counts["other"],
            "frames_per_s": round(counts["ok"] / elapsed, 1),
            "samples_per_s": round(counts["ok"] * 800 / elapsed, 0),
            "ack_latency_ms": {"p50": round(float(q[0]), 2), "p95": round(float(q[1]), 2), "p99": round(float(q[2]), 2)},
            "frame": "8 ch x 100 samples (50 ms at 2 kHz), 1.7 kB binary", "env": _env()}


def bench_gateway(s: Settings, devices: int = 20, seconds: float = 10.0, transport: str = "ws",
                  window: int = 32, rate: float = 0.0) -> dict[str, Any]:
    """Frames/s and ack latency through a RUNNING gateway (client and gateway share the machine)."""
    secrets: dict[str, str] = {}
    with psycopg.connect(s.db_dsn(), autocommit=True) as conn:
        for i in range(devices):
            dev = f"bench-gw-{i:04d}"
            secrets[dev] = registry.add_device(conn, clinic_id="bench-clinic", device_id=dev, rotate=True)
    return asyncio.run(_bench_gateway(s, devices, seconds, transport, window, secrets, rate))


def write(result: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))

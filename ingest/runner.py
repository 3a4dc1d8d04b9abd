"""Drive simulated devices and recording replays into the system (used by the CLI, tests, benchmarks)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import psycopg

from ingest import registry, wire
from ingest.send import DeliveryStats, HttpSender, KafkaSender, WsSender, gateway_connector, pace
from ingest.simulator import SimRecord, Simulation, quantize
from mimetic.config import Settings
from mimetic.domain import MUSCLES, parse_channel_name

log = logging.getLogger("mimetic.runner")


def gateway_url(s: Settings) -> str:
    return s.gateway_url or f"http://{s.gateway_host}:{s.gateway_port}"


async def gateway_healthy(s: Settings) -> bool:
    try:
        async with aiohttp.ClientSession(connector=gateway_connector(s.gateway_ca_file),
                                         timeout=aiohttp.ClientTimeout(total=5)) as http:
            async with http.get(gateway_url(s) + "/v1/openapi.json") as r:  # the device port; no auth
                return r.status == 200
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
        return False


def register_simulation(sim: Simulation, s: Settings, *, kdf_n: int = registry.SCRYPT_N) -> dict[str, str]:
    """Clinic, devices and (through clinical.simulated) patients of a simulation; fresh secrets by device id."""
    from clinical.simulated import register_patients

    out: dict[str, str] = {}
    with psycopg.connect(s.db_dsn(), autocommit=True) as conn:
        registry.ensure_clinic(conn, sim.clinic_id, "Simulated clinic")
        for i in range(len(sim.patients)):
            out[sim.device_ids[i]] = registry.add_device(
                conn, clinic_id=sim.clinic_id, device_id=sim.device_ids[i], fs_hz=sim.fs_hz,
                channel_map=sim.channel_map, model="mimetic-sim", firmware="sim-1", rotate=True, kdf_n=kdf_n)
        register_patients(conn, sim)   # through the clinical service, as a clinic would
    return out


async def _drive(records, sender, realtime: bool, t0_us: int, wall0: float, speed: float = 1.0,
                 max_rate: float = 0.0) -> None:
    async for r in pace(records, realtime, t0_us, wall0, speed, max_rate):
        await sender.send(r.kind, r.item)


async def run_simulation(sim: Simulation, s: Settings, *, via: str = "gateway", realtime: bool = False,
                         secrets: dict[str, str] | None = None, transport: str = "ws",
                         max_rate: float = 0.0, speed: float = 1.0) -> dict[str, Any]:
    """Stream every simulated device concurrently; returns per-device delivery stats.

    `realtime` paces records by their device time, `speed` times faster than real time.
    """
    stats = {d: DeliveryStats() for d in sim.device_ids}
    wall0 = time.monotonic()
    t_start = time.monotonic()
    if via == "kafka":
        sender = KafkaSender(s, "simulator")
        await sender.start()
        try:
            async def one(i: int) -> None:
                sub = KafkaSenderView(sender, stats[sim.device_ids[i]])
                await _drive(sim.device_records(i), sub, realtime, sim.start_us, wall0, speed)
            await asyncio.gather(*(one(i) for i in range(len(sim.patients))))
        finally:
            await sender.close()
    else:
        if secrets is None:
            raise ValueError("via gateway needs device secrets (register_simulation)")
        base = gateway_url(s)
        conn = gateway_connector(s.gateway_ca_file, limit=0)
        async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=60)) as http:
            async def one(i: int) -> None:
                dev = sim.device_ids[i]
                snd = (WsSender(base, dev, secrets[dev], http, stats[dev]) if transport == "ws"
                       else HttpSender(base, dev, secrets[dev], http, stats[dev]))
                await _drive(sim.device_records(i), snd, realtime, sim.start_us, wall0, speed, max_rate=max_rate)
                if isinstance(snd, WsSender):
                    await snd.close()
            await asyncio.gather(*(one(i) for i in range(len(sim.patients))))
    elapsed = time.monotonic() - t_start
    return {"elapsed_s": round(elapsed, 3), "devices": {d: st.as_dict() for d, st in stats.items()}}


class KafkaSenderView:
    """Per-device stats over a shared KafkaSender."""

    def __init__(self, sender: KafkaSender, stats: DeliveryStats):
        self.sender, self.stats = sender, stats

    async def send(self, kind: str, item: Any) -> None:
        await self.sender.send(kind, item)
        self.stats.ok(kind)


# ---------------------------------------------------------------------------
# replay
# ---------------------------------------------------------------------------


def recording_frames(path: str | Path, device_id: str, *, fs_hz: float | None = None, frame_ms: int = 50,
                     t0_us: int | None = None, session_id: uuid.UUID | None = None,
                     channel_map: list[dict[str, Any]] | None = None, first_seq: int = 1,
                     therapy_type: str = "assessment") -> tuple[list[SimRecord], dict[str, Any]]:
    """A recording (formats of `mimetic dsp`, via processors.recordings.load_recording) as device records:
    session_start, frames of ``frame_ms``, session_end, dated to end now unless ``t0_us`` is given.
    Returns (records, info)."""
    from processors.recordings import load_recording

    rec = load_recording(path, fs_hz=fs_hz)
    fs = float(rec.fs_hz)
    if abs(fs - round(fs)) > 1e-6:
        raise ValueError(f"recording at {fs} Hz: the wire format carries integer rates")
    fs_i = int(round(fs))
    x = np.asarray(rec.samples_uv, dtype=np.float64)
    x = x - np.median(x, axis=1, keepdims=True) if not rec.calibrated else x
    peak = float(np.max(np.abs(x))) if x.size else 1.0
    scale = float(np.float32(max(wire.SCALE_MIN_UV, peak / 32000.0)))
    if channel_map is None:
        channel_map = []
        try:
            for i, name in enumerate(rec.channel_names):
                m, side = parse_channel_name(name)
                if m not in MUSCLES:
                    raise ValueError(name)
                channel_map.append({"channel": i, "muscle": m, "side": side.value})
        except ValueError:
            channel_map = []
    session_id = session_id or uuid.uuid4()
    # by default the recording ends now: replayed at any speed, its device time is never ahead of the
    # receive time (the device-clock rule refuses frames more than MIMETIC_CLOCK_MAX_FUTURE_S ahead)
    t0_us = t0_us if t0_us is not None else wire.now_us() - (x.shape[1] * 1_000_000) // fs_i
    n = max(1, int(round(fs_i * frame_ms / 1000)))
    records: list[SimRecord] = []
    if channel_map:
        start = wire.event_from_json({"type": "session_start", "seq": 1, "t_us": t0_us, "session_id": str(session_id),
                                      "therapy_type": therapy_type, "fs_hz": fs_i, "channel_map": channel_map,
                                      "protocol": "replay"}, device_id)
        records.append(SimRecord(wire.KIND_EVENT, 0.0, start, 0))
    seq = first_seq
    for k in range(0, x.shape[1], n):
        block = x[:, k:k + n]
        fr = wire.Frame(device_id=device_id, seq=seq, t_us=t0_us + (k * 1_000_000) // fs_i, fs_hz=fs_i,
                        scale_uv=scale, samples=quantize(block, scale), session_id=session_id)
        records.append(SimRecord(wire.KIND_FRAME, k / fs, fr, 0))
        seq += 1
    dur = x.shape[1] / fs
    if channel_map:
        end = wire.event_from_json({"type": "session_end", "seq": 2, "t_us": t0_us + int(dur * 1e6),
                                    "session_id": str(session_id)}, device_id)
        records.append(SimRecord(wire.KIND_EVENT, dur, end, 0))
    info = {"path": str(path), "fs_hz": fs_i, "channels": list(rec.channel_names), "n_samples": int(x.shape[1]),
            "duration_s": round(dur, 3), "scale_uv": scale, "calibrated": rec.calibrated,
            "frames": seq - first_seq, "session_id": str(session_id), "channel_map": channel_map}
    return records, info


async def run_replay(records: list[SimRecord], s: Settings, device_id: str, *, via: str, secret: str | None,
                     speed: float, transport: str = "ws") -> dict[str, Any]:
    stats = DeliveryStats()
    realtime = speed > 0
    t0_us = records[0].item.t_us if records else 0
    wall0 = time.monotonic()
    if via == "kafka":
        sender = KafkaSender(s, "replay", stats)
        await sender.start()
        try:
            await _drive(records, sender, realtime, t0_us, wall0, speed or 1.0)
        finally:
            await sender.close()
    else:
        if not secret:
            raise ValueError("replay through the gateway needs the device secret (--secret or MIMETIC_DEVICE_SECRET)")
        async with aiohttp.ClientSession(connector=gateway_connector(s.gateway_ca_file)) as http:
            snd = (WsSender(gateway_url(s), device_id, secret, http, stats) if transport == "ws"
                   else HttpSender(gateway_url(s), device_id, secret, http, stats))
            await _drive(records, snd, realtime, t0_us, wall0, speed or 1.0)
            if isinstance(snd, WsSender):
                await snd.close()
    return {"elapsed_s": round(time.monotonic() - wall0, 3), **stats.as_dict()}

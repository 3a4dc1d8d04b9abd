"""`mimetic gateway | simulate | replay | devices ...` and `mimetic bench ingest`."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from mimetic.config import get_settings
from mimetic.console import console, err
from mimetic.console import fail as _fail


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    devices_app = typer.Typer(no_args_is_help=True, help="Device registry and credentials.")
    app.add_typer(devices_app, name="devices")
    from clinical.cli import register_devices

    register_devices(devices_app)   # devices assign | unassign (the clinical workflow)

    @app.command("gateway")
    def gateway_cmd(
        host: Annotated[Optional[str], typer.Option(help="Listen address (default MIMETIC_GATEWAY_HOST).")] = None,
        port: Annotated[Optional[int], typer.Option(help="Port (default MIMETIC_GATEWAY_PORT).")] = None,
        openapi: Annotated[bool, typer.Option("--openapi", help="Print the device API (OpenAPI 3.1 JSON) "
                                                                "and exit.")] = False,
    ) -> None:
        """Run the ingest gateway (HTTP + WebSocket -> Kafka) until SIGTERM/SIGINT."""
        if openapi:
            from ingest.gateway.openapi import openapi_json

            typer.echo(openapi_json().decode())
            return
        from ingest.gateway import run_gateway

        s = get_settings()
        upd = {k: v for k, v in {"gateway_host": host, "gateway_port": port}.items() if v is not None}
        run_gateway(s.model_copy(update=upd) if upd else s)

    @devices_app.command("add")
    def devices_add(
        clinic: Annotated[str, typer.Option("--clinic", help="Clinic id (created if missing).")],
        device: Annotated[str, typer.Option("--device", help="Device id [A-Za-z0-9._-]{3,64}.")],
        patient: Annotated[Optional[str], typer.Option("--patient", help="Pseudonymous patient code (created if missing).")] = None,
        channel_map: Annotated[Optional[str], typer.Option("--channel-map", help="JSON list or short form zygomaticus_L,zygomaticus_R,...")] = None,
        fs: Annotated[Optional[int], typer.Option("--fs", help="Sampling rate the device must use (Hz).")] = None,
        model: Annotated[Optional[str], typer.Option(help="Device model.")] = None,
        rotate: Annotated[bool, typer.Option("--rotate", help="Existing device: issue a new secret and re-activate it.")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON {device_id, secret}.")] = False,
    ) -> None:
        """Register a device and print its secret (shown once; only a scrypt hash is stored)."""
        import psycopg

        from ingest import registry

        try:
            cmap = registry.parse_channel_map(channel_map)
        except Exception as exc:
            _fail(f"bad --channel-map: {exc}")
        try:
            with psycopg.connect(get_settings().db_dsn(), autocommit=True) as conn:
                secret = registry.add_device(conn, clinic_id=clinic, device_id=device, patient_code=patient,
                                             fs_hz=fs, channel_map=cmap, model=model, rotate=rotate)
                if patient:   # a dated assignment from now (clinical workflow)
                    from clinical.service import assign_from_now, cli_actor

                    assign_from_now(conn, cli_actor(), patient, device)
        except ValueError as exc:
            _fail(str(exc))
        if as_json:
            print(json.dumps({"device_id": device, "secret": secret}))
        else:
            console.print(f"device [bold]{device}[/] registered in clinic {clinic}")
            console.print("secret (shown once, use as `Authorization: Bearer <secret>`):")
            print(secret)

    @devices_app.command("list")
    def devices_list(
        clinic: Annotated[Optional[str], typer.Option("--clinic")] = None,
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """List registered devices (never secrets)."""
        import psycopg

        from ingest import registry

        with psycopg.connect(get_settings().db_dsn(), autocommit=True) as conn:
            rows = registry.list_devices(conn, clinic)
        if as_json:
            print(json.dumps(rows, default=str, indent=2))
            return
        if not rows:
            from mimetic.where import nothing_found

            what = f"no devices of clinic {clinic}" if clinic else "no devices"
            err.print(nothing_found(what, get_settings()), highlight=False, markup=False)
            return
        t = Table("device", "clinic", "patient", "fs", "channels", "status", "created", "revoked")
        for r in rows:
            t.add_row(r["device_id"], r["clinic_id"], r["patient"] or "-", str(r["fs_hz"] or "-"), str(r["channels"]),
                      r["status"], str(r["created_at"])[:19], str(r["revoked_at"] or "-")[:19])
        console.print(t)

    @devices_app.command("revoke")
    def devices_revoke(device: Annotated[str, typer.Argument(help="Device id.")]) -> None:
        """Revoke a device's credentials (the gateway refuses it within MIMETIC_GATEWAY_AUTH_CACHE_TTL_S)."""
        import psycopg

        from ingest import registry

        with psycopg.connect(get_settings().db_dsn(), autocommit=True) as conn:
            if not registry.revoke_device(conn, device):
                _fail(f"no active device {device}")
        console.print(f"device {device} revoked")

    @app.command("simulate")
    def simulate_cmd(
        patients: Annotated[int, typer.Option(help="Patients (one device each).")] = 3,
        sessions: Annotated[int, typer.Option(help="Sessions per patient.")] = 2,
        duration: Annotated[float, typer.Option(help="Session length in seconds.")] = 600.0,
        fs: Annotated[int, typer.Option(help="Sampling rate (Hz).")] = 2000,
        channels: Annotated[int, typer.Option(help="Channels (even: muscle pairs).")] = 8,
        seed: Annotated[int, typer.Option(help="Random seed (same seed, same data).")] = 0,
        realtime: Annotated[bool, typer.Option("--realtime/--fast", help="Pace by device time, or as fast as possible.")] = True,
        via: Annotated[str, typer.Option(help="gateway (WebSocket per device) or kafka (straight to the topics).")] = "gateway",
        transport: Annotated[str, typer.Option(help="Through the gateway: ws or http.")] = "ws",
        faults: Annotated[float, typer.Option(help="Probability of each fault type per session (0 = none).")] = 0.35,
        clinic: Annotated[str, typer.Option(help="Clinic id of the simulated patients.")] = "sim-clinic",
        device_prefix: Annotated[Optional[str], typer.Option(help="Device ids are PREFIX-000...; default sim<seed>.")] = None,
        truth_out: Annotated[Optional[Path], typer.Option("--truth-out", help="Write the ground truth JSON here.")] = None,
        max_rate: Annotated[float, typer.Option(help="--fast through the gateway: at most this many records/s per "
                                                     "device (stay under MIMETIC_GATEWAY_RATE_PER_S); 0 = no cap.")] = 180.0,
        verify: Annotated[bool, typer.Option("--verify", help="Afterwards, read the raw topics back and check "
                                                             "them against the truth.")] = False,
    ) -> None:
        """Simulate a clinic's patients doing therapy sessions (sEMG, telemetry, events, faults)."""
        from ingest.runner import register_simulation, run_simulation
        from ingest.simulator import Simulation

        if via not in ("gateway", "kafka") or transport not in ("ws", "http"):
            _fail("--via is gateway or kafka; --transport is ws or http")
        s = get_settings()
        start_us = (time.time_ns() // 1000) if realtime else None
        try:
            sim = Simulation(patients=patients, sessions=sessions, duration_s=duration, fs_hz=fs, channels=channels,
                             seed=seed, start_us=start_us, session_gap_s=(duration + 2.0) if realtime else 86400.0,
                             fault_prob=faults, clinic_id=clinic, device_prefix=device_prefix)
        except ValueError as exc:
            _fail(str(exc))
        from ingest.runner import gateway_healthy

        if via == "gateway" and not asyncio.run(gateway_healthy(s)):
            _fail(f"no gateway at {s.gateway_url or f'http://{s.gateway_host}:{s.gateway_port}'}: "
                  "start `mimetic gateway` (or use --via kafka)")
        try:
            secrets = register_simulation(sim, s)
        except Exception as exc:
            _fail(f"cannot register the simulated devices: {exc}\nIs the stack up and migrated?")
        err.print(f"simulating {patients} patients x {sessions} sessions x {duration:g}s at {fs} Hz x {channels} ch "
                  f"({'real time' if realtime else 'fast'}) via {via}")
        result = asyncio.run(run_simulation(sim, s, via=via, realtime=realtime, secrets=secrets, transport=transport,
                                          max_rate=max_rate if via == "gateway" else 0.0))
        truth = sim.truth()
        truth["delivery"] = result
        if truth_out:
            truth_out.write_text(json.dumps(truth, indent=1))
        t = Table("device", "patient", "affected", "responder", "synkinesis", "sent", "rejected", "retries")
        for p in truth["patients"]:
            d = result["devices"][p["device_id"]]
            t.add_row(p["device_id"], p["code"], p["affected_side"], str(p["responder"]), str(p["synkinesis"]),
                      str(d["sent"]), str(d["rejected"]), str(d["retries"]))
        console.print(t)
        console.print(f"done in {result['elapsed_s']:.1f}s" + (f"; truth in {truth_out}" if truth_out else ""))
        if any(d["rejected"] for d in result["devices"].values()):
            raise typer.Exit(2)
        if verify:
            from ingest.verify import verify_truth

            problems = verify_truth(s, truth)
            for p in problems:
                err.print(f"[red]mismatch:[/] {p}")
            if problems:
                raise typer.Exit(3)
            console.print("verified: the raw topics hold exactly what the truth says was sent")

    @app.command("replay")
    def replay_cmd(
        file: Annotated[Path, typer.Argument(help="Recording (CSV, BioSPPy txt, UCI txt, EDF: the formats of `mimetic dsp`).")],
        device: Annotated[str, typer.Option("--device", help="Device id to send as.")],
        speed: Annotated[float, typer.Option(help="1 = real time, 10 = ten times faster, 0 = as fast as possible.")] = 1.0,
        fs: Annotated[Optional[float], typer.Option(help="Sampling rate when the file does not say.")] = None,
        via: Annotated[str, typer.Option(help="gateway or kafka.")] = "gateway",
        transport: Annotated[str, typer.Option(help="ws or http.")] = "ws",
        secret: Annotated[Optional[str], typer.Option(help="Device secret (default $MIMETIC_DEVICE_SECRET).")] = None,
        channel_map: Annotated[Optional[str], typer.Option("--channel-map", help="Map for the session_start event.")] = None,
        frame_ms: Annotated[int, typer.Option(help="Frame length in ms.")] = 50,
    ) -> None:
        """Stream a recording into the system as a device would (session_start, frames, session_end)."""
        from ingest import registry
        from ingest.runner import recording_frames, run_replay

        cmap = registry.parse_channel_map(channel_map) if channel_map else None
        try:
            records, info = recording_frames(file, device, fs_hz=fs, frame_ms=frame_ms, channel_map=cmap)
        except Exception as exc:
            _fail(f"cannot read {file}: {exc}")
        s = get_settings()
        secret = secret or os.environ.get("MIMETIC_DEVICE_SECRET")
        err.print(f"replaying {info['duration_s']}s, {len(info['channels'])} channels at {info['fs_hz']} Hz "
                  f"({info['frames']} frames) as {device} via {via} at speed {speed:g}")
        try:
            result = asyncio.run(run_replay(records, s, device, via=via, secret=secret, speed=speed, transport=transport))
        except (ValueError, RuntimeError, TimeoutError) as exc:
            _fail(str(exc))
        print(json.dumps({**info, **result}))
        if result["rejected"]:
            raise typer.Exit(2)

    @bench_app.command("simulator")
    def bench_simulator_cmd(
        seconds: Annotated[float, typer.Option(help="Measurement time.")] = 5.0,
        out: Annotated[Path, typer.Option("--out", help="JSON result file")] = Path("bench/results/simulator.json"),
    ) -> None:
        """Simulator speed: frames synthesised+encoded per CPU second, real-time devices per core."""
        from ingest.bench import bench_simulator, write

        r = bench_simulator(seconds)
        write(r, out)
        print(json.dumps(r, indent=2))

    @bench_app.command("gateway")
    def bench_gateway_cmd(
        devices: Annotated[int, typer.Option(help="Concurrent devices.")] = 20,
        seconds: Annotated[float, typer.Option(help="Measurement time.")] = 10.0,
        transport: Annotated[str, typer.Option(help="ws or http.")] = "ws",
        window: Annotated[int, typer.Option(help="Unacknowledged frames (ws) or parallel requests (http) per device.")] = 32,
        rate: Annotated[float, typer.Option(help="ws: frames/s offered per device (20 = a real 2 kHz device); 0 = flat out.")] = 0.0,
        out: Annotated[Path, typer.Option("--out", help="JSON result file")] = Path("bench/results/gateway.json"),
    ) -> None:
        """Gateway throughput and ack latency, against a running `mimetic gateway` and the real Kafka."""
        from ingest.bench import bench_gateway, write
        from ingest.runner import gateway_healthy

        s = get_settings()
        if not asyncio.run(gateway_healthy(s)):
            _fail("no gateway running: start `mimetic gateway` first")
        r = bench_gateway(s, devices=devices, seconds=seconds, transport=transport, window=window, rate=rate)
        write(r, out)
        print(json.dumps(r, indent=2))

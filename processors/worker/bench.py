"""`mimetic bench pipeline`: simulated devices in real time through Kafka, the worker and the sink.

For each device count, devices (8 channels, 2 kHz, 50 ms frames) produce their
frames at the real-time rate straight into the raw-frames topic (as the gateway
would, acks=all), while the worker and the sink run as real processes. A poller
reads which (device, seq) envelope rows have reached the database, giving the
frame-to-database latency of every frame (to within the poll period). A step
is *sustained* when every frame is stored, the backlog (frames sent but not yet
stored) grows by at most half a second of input over the step's second half, and
the p99 latency stays under the target.

`--catch-up D:S` adds one more measurement (`run_catch_up`): S seconds of D devices' input already in
Kafka when the workers start, drained as fast as they can.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psycopg

from mimetic.config import Settings
from mimetic.net import free_loopback_port

BENCH_DATABASE = "mimetic_bench"
POLL_S = 0.1


def backlog_growth_ok(start_frames: int, end_frames: int, devices: int) -> bool:
    """Over the second half of a step the backlog grew by at most half a second of input."""
    return end_frames - start_frames <= 0.5 * devices * 20


@dataclass
class StepResult:
    devices: int
    duration_s: float
    frames_sent: int = 0
    frames_stored: int = 0
    send_rate_fps: float = 0.0
    stored_rate_fps: float = 0.0
    samples_per_s: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)
    backlog_start_frames: int = 0
    backlog_end_frames: int = 0
    backlog_frames: list[int] = field(default_factory=list)  # sent but not stored, every tenth of the step
    worker_rss_mb: float = 0.0
    worker_cpu_s: float = 0.0
    sink_cpu_s: float = 0.0
    broker_cpu_s: float = 0.0
    postgres_cpu_s: float = 0.0  # the server and all its backends
    bench_cpu_s: float = 0.0  # this process: the simulated devices' producer and the database poller
    sustained: bool = False


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _stat(path: Path) -> list[str] | None:
    """The fields of a /proc/<pid>/stat after the command name (field 3 on), or None if gone."""
    try:
        return path.read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _ticks_s(fields: list[str], *which: int) -> float:
    return sum(int(fields[k]) for k in which) / os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    fields = _stat(Path(f"/proc/{pid}/stat"))
    return 0.0 if fields is None else _ticks_s(fields, 11, 12)  # utime, stime


def _tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process, its exited children, and its live children (PostgreSQL's backends)."""
    fields = _stat(Path(f"/proc/{pid}/stat"))
    if fields is None:
        return 0.0
    total = _ticks_s(fields, 11, 12, 13, 14)  # utime, stime, cutime, cstime
    for path in Path("/proc").glob("[0-9]*/stat"):
        child = _stat(path)
        if child is not None and int(child[1]) == pid:  # ppid
            total += _ticks_s(child, 11, 12)
    return total


def _postmaster_pid(s: Settings) -> int:
    from mimetic.stack.postgres import PgPaths

    try:
        return int((PgPaths.of(s).data / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return 0


class _Poller(threading.Thread):
    """Records when each (device, seq) envelope row first becomes visible in the database.

    Each poll reads only rows newer than the newest one already seen per device (an index range
    scan per device): the sink stores a device's frames in order, so nothing is skipped, and the
    poller's own cost stays flat instead of growing with the rows stored (re-reading a 30 s window
    every 100 ms cost a core at 50 devices and distorted the figures)."""

    def __init__(self, dsn: str, devices: list[str]):
        super().__init__(daemon=True)
        self.dsn, self.devices = dsn, devices
        self.seen: dict[tuple[str, int], float] = {}
        self.stop_flag = threading.Event()

    def run(self) -> None:
        from datetime import datetime, timezone

        newest = {d: datetime(1970, 1, 1, tzinfo=timezone.utc) for d in self.devices}
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self.stop_flag.is_set():
                t_poll = time.time()
                rows = conn.execute(
                    "select w.d, e.seq, e.time from unnest(%s::text[], %s::timestamptz[]) as w(d, t) "
                    "join lateral (select seq, time from envelope where device_id = w.d and time > w.t) e on true",
                    (list(newest), list(newest.values()))).fetchall()
                for d, q, t in rows:
                    self.seen.setdefault((d, q), t_poll)
                    if t > newest[d]:
                        newest[d] = t
                time.sleep(POLL_S)


def _pregenerate(s: Settings, devices: int, n_frames: int, prefix: str, log=print) -> list[list[tuple]]:
    """Every device's records for the run, encoded up front so producing costs only the send:
    (topic, key, value, headers, seq or None, device id)."""
    from ingest import wire
    from ingest.simulator import DeviceStream

    t0_us = int(time.time() * 1e6)
    per_device: list[list[tuple]] = []
    started = last_log = time.monotonic()
    for i in range(devices):
        recs: list[tuple] = []
        frames = 0
        for rec in DeviceStream(f"{prefix}{i:04d}", seed=i, t0_us=t0_us, session_s=3600.0).records():
            key, value, headers = wire.encode_record(rec.item, source="bench")
            seq = rec.item.seq if rec.kind == wire.KIND_FRAME else None
            recs.append((wire.topic_spec_for(rec.kind).name(s), key, value, headers, seq, rec.item.device_id))
            if seq is not None:
                frames += 1
                if frames >= n_frames:
                    break
        per_device.append(recs)
        if time.monotonic() - last_log > 10:
            log(f"  simulating devices: {i + 1} of {devices} after {time.monotonic() - started:.0f} s")
            last_log = time.monotonic()
    return per_device


async def _produce(s: Settings, per_device: list[list[tuple]], frame_s: float,
                   sent: dict[tuple[str, int], float]) -> None:
    """Real-time producers: each device sends one 50 ms frame (and what goes with it) every 50 ms."""
    from aiokafka import AIOKafkaProducer

    from mimetic.kafka_security import client_kwargs

    producer = AIOKafkaProducer(bootstrap_servers=s.bootstrap_servers(), acks="all", enable_idempotence=True,
                                linger_ms=5, max_batch_size=512 * 1024, **client_kwargs(s))
    await producer.start()
    try:
        cursors = [0] * len(per_device)
        wall0 = time.monotonic()
        k = 0
        while any(c < len(r) for c, r in zip(cursors, per_device)):
            delay = wall0 + k * frame_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            futs = []
            stamped = []
            for i, recs in enumerate(per_device):
                while cursors[i] < len(recs):
                    topic, key, value, headers, seq, device = recs[cursors[i]]
                    cursors[i] += 1
                    futs.append(await producer.send(topic, value=value, key=key, headers=headers))
                    if seq is not None:
                        stamped.append((device, seq))
                        break
            now = time.time()
            for key in stamped:
                sent[key] = now
            await asyncio.gather(*futs)
            k += 1
    finally:
        await producer.stop()


def _step_settings(base: Settings, tag: str) -> Settings:
    """Settings of one step: its own topics, groups and a fresh migrated bench database."""
    from mimetic.db import fresh_database
    from mimetic.db.migrate import migrate
    from mimetic.kafka_admin import ensure_topics

    run = time.strftime("%H%M%S")
    s = base.model_copy(update={"pg_database": BENCH_DATABASE, "topic_prefix": f"bench-{run}-{tag}",
                                "worker_id": f"bench-worker-{run}-{tag}", "sink_group": f"bench-sink-{run}-{tag}"})
    fresh_database(s)
    migrate(s.db_dsn())
    ensure_topics(s)
    return s


def _start(s: Settings, names: list[str], tag: str) -> dict[str, subprocess.Popen]:
    """`mimetic sink` / `mimetic worker` processes (names like "sink", "worker0"), logs in run/bench."""
    log_dir = s.private_dir("run", "bench")
    env = {**os.environ, **s.as_env()}
    return {name: subprocess.Popen(
        [sys.executable, "-m", "mimetic.cli", name.rstrip("0123456789")],
        env=env | {"MIMETIC_WORKER_WEB_PORT": str(free_loopback_port()),
                   "MIMETIC_WORKER_ADMIN_PORT": str(free_loopback_port()),
                   "MIMETIC_SINK_ADMIN_PORT": str(free_loopback_port())},
        stdout=open(log_dir / f"{name}-{tag}.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True)
        for name in names}


def _stop(s: Settings, procs: dict[str, subprocess.Popen]) -> None:
    from mimetic.kafka_admin import delete_topics

    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
    delete_topics(s, f"{s.topic_prefix}.", f"{s.worker_id}-")  # every partition costs broker heap


def run_catch_up(base: Settings, devices: int, backlog_s: float, workers: int = 1, log=print) -> dict:
    """How fast a backlog drains: `backlog_s` seconds of `devices` devices' input is in Kafka before the
    workers and the sink start (as after an outage). Reports the time to the first stored envelope row
    (start-up and group join), then the drain rate from there to the last row. Large batches make this
    the pipeline's throughput ceiling, above what real time shows."""
    s = _step_settings(base, f"catchup{devices}")
    per_device = _pregenerate(s, devices, int(backlog_s / 0.05), "bc", log)
    sent: dict[tuple[str, int], float] = {}
    asyncio.run(_produce(s, per_device, 0.0, sent))  # no pacing: the whole backlog at once
    procs = _start(s, ["sink"] + [f"worker{i}" for i in range(workers)], f"catchup{devices}")
    try:
        t0, expected = time.time(), len(sent) - devices  # a device's first frame yields no envelope row
        stored, last_log, t_first, n_first = 0, t0, None, 0
        with psycopg.connect(s.db_dsn(), autocommit=True) as conn:
            while stored < expected and time.time() - t0 < 60 + 4 * backlog_s:
                time.sleep(0.25)
                stored = conn.execute("select count(*) from envelope").fetchone()[0]
                if t_first is None and stored:
                    t_first, n_first = time.time(), stored
                if time.time() - last_log > 10:
                    log(f"  catch-up: {stored} of {expected} envelope rows after {time.time() - t0:.0f} s")
                    last_log = time.time()
        t_end = time.time()
        # the drain rate counts from the first stored row: process start-up and group join excluded
        drain_s = max(1e-9, t_end - (t_first or t0))
        wk = [k for k in procs if k.startswith("worker")]
        result = {"devices": devices, "backlog_s": backlog_s, "frames": len(sent), "rows_stored": stored,
                  "complete": stored >= expected, "first_row_after_s": round((t_first or t_end) - t0, 1),
                  "drain_s": round(drain_s, 1), "frames_per_s": round((stored - n_first) / drain_s),
                  "backlog_s_per_wall_s": round(backlog_s * (stored - n_first) / max(1, expected) / drain_s, 2),
                  "worker_cpu_s": round(sum(_cpu_s(procs[k].pid) for k in wk), 1),
                  "worker_rss_mb": round(sum(_rss_mb(procs[k].pid) for k in wk), 1)}
        log(json.dumps(result))
        return result
    finally:
        _stop(s, procs)


def run_pipeline_bench(base: Settings, device_counts: list[int], duration_s: float, out: Path,
                       p99_target_ms: float = 1000.0, log=print, workers: int = 1,
                       catch_up: tuple[int, float] | None = None) -> dict:
    from mimetic import stack
    from mimetic.stack.kafka import KafkaPaths
    from mimetic.stack.procs import read_pid

    for _ in stack.up(base):
        pass
    results: list[StepResult] = []
    for n in device_counts:
        s = _step_settings(base, str(n))
        # worker processes of one group (one per core is the deployment unit), each its own web port
        procs = _start(s, ["sink"] + [f"worker{i}" for i in range(workers)], str(n))
        try:
            time.sleep(8 + 4 * (workers - 1))  # workers join their group, sink starts (generation overlaps it)
            prefix = "bd"
            per_device = _pregenerate(s, n, int(duration_s / 0.05), prefix, log)
            poller = _Poller(s.db_dsn(), [f"{prefix}{i:04d}" for i in range(n)])
            poller.start()
            sent: dict[tuple[str, int], float] = {}
            cpu0 = {k: _cpu_s(p.pid) for k, p in procs.items()}
            broker_pid = read_pid(KafkaPaths.of(s).pid_file) or 0
            cpu0["broker"] = _cpu_s(broker_pid) if broker_pid else 0.0
            pg_pid = _postmaster_pid(s)
            cpu0["postgres"] = _tree_cpu_s(pg_pid) if pg_pid else 0.0
            bench_cpu0 = time.process_time()
            t_start = time.time()
            mid_backlog: list[int] = []

            async def produce_and_watch() -> None:
                task = asyncio.create_task(_produce(s, per_device, 0.05, sent))
                while not task.done():
                    await asyncio.sleep(duration_s / 10)
                    mid_backlog.append(len(sent) - len(poller.seen))
                await task

            asyncio.run(produce_and_watch())
            t_sent = time.time() - t_start
            # drain: give the pipeline a bounded time to catch up
            deadline = time.time() + 60
            while len(poller.seen) < len(sent) - n and time.time() < deadline:
                time.sleep(0.5)
            poller.stop_flag.set()
            poller.join(5)
            r = StepResult(devices=n, duration_s=duration_s)
            r.frames_sent, r.frames_stored = len(sent), sum(1 for k in sent if k in poller.seen)
            r.send_rate_fps = r.frames_sent / t_sent
            lat = np.array([poller.seen[k] - t for k, t in sent.items() if k in poller.seen]) * 1000
            if lat.size:
                r.latency_ms = {f"p{q}": round(float(np.percentile(lat, q)), 1) for q in (50, 95, 99)}
                r.latency_ms["max"] = round(float(lat.max()), 1)
            r.stored_rate_fps = r.frames_stored / max(1e-9, (max(poller.seen.values(), default=t_start) - t_start))
            r.samples_per_s = r.stored_rate_fps * 8 * 100
            half = mid_backlog[len(mid_backlog) // 2:] if mid_backlog else [0]
            r.backlog_start_frames, r.backlog_end_frames = half[0], half[-1]
            r.backlog_frames = mid_backlog
            r.bench_cpu_s = round(time.process_time() - bench_cpu0, 1)
            wk = [k for k in procs if k.startswith("worker")]
            r.worker_rss_mb = round(sum(_rss_mb(procs[k].pid) for k in wk), 1)
            r.worker_cpu_s = round(sum(_cpu_s(procs[k].pid) - cpu0[k] for k in wk), 1)
            r.sink_cpu_s = round(_cpu_s(procs["sink"].pid) - cpu0["sink"], 1)
            r.broker_cpu_s = round(_cpu_s(broker_pid) - cpu0["broker"], 1) if broker_pid else 0.0
            r.postgres_cpu_s = round(_tree_cpu_s(pg_pid) - cpu0["postgres"], 1) if pg_pid else 0.0
            growth_ok = backlog_growth_ok(r.backlog_start_frames, r.backlog_end_frames, n)
            # a device's first frame fills the envelope window and yields no envelope row
            r.sustained = (r.frames_stored >= r.frames_sent - n and growth_ok
                           and r.latency_ms.get("p99", 1e9) <= p99_target_ms)
            with psycopg.connect(s.db_dsn(), autocommit=True) as conn:
                rows = conn.execute("select count(*) from envelope").fetchone()[0]
                size = conn.execute("select hypertable_size('envelope')").fetchone()[0] or 0
            device_hours = n * duration_s / 3600
            step = r.__dict__ | {"envelope_rows_per_device_hour": round(rows / device_hours),
                                 "envelope_mb_per_device_hour": round(size / 1e6 / device_hours, 1)}
            results.append(step)
            log(json.dumps(step))
        finally:
            _stop(s, procs)
    caught_up = run_catch_up(base, catch_up[0], catch_up[1], workers, log) if catch_up else None
    sustained = [r["devices"] for r in results if r["sustained"]]
    report = {
        "benchmark": "pipeline",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "setup": {"channels": 8, "fs_hz": 2000, "frame_ms": 50, "duration_s_per_step": duration_s,
                  "p99_target_ms": p99_target_ms, "latency_resolution_ms": POLL_S * 1000,
                  "worker_processes": workers, "worker_batch_max": base.worker_batch_max, "worker_batch_within_s": base.worker_batch_within_s},
        "max_sustained_devices": max(sustained) if sustained else 0,
        "steps": results,
        "catch_up": caught_up,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    return report

"""Fixtures for end-to-end pipeline tests: worker and sink as real subprocesses, and the
black-box checks the fault tests share (expected rows, stored rows, Kafka group state)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psycopg
import pytest

from ingest import wire
from ingest.runner import run_simulation
from ingest.simulator import Simulation
from mimetic.config import Settings
from mimetic import kafka_admin
from mimetic.kafka_admin import delete_topics, ensure_topics
from mimetic.net import free_loopback_port
from processors import records as R
from processors.worker.device import DeviceProcessor, WorkerParams


class Service:
    """One `mimetic <command>` subprocess with its log file; stopped by its own pid."""

    def __init__(self, command: list[str], env: dict[str, str], log_path: Path):
        self.command, self.env, self.log_path = command, env, log_path
        self.proc: subprocess.Popen | None = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def start(self) -> "Service":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "mimetic.cli", *self.command], env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        return self

    def kill(self) -> None:
        """SIGKILL: the crash the pipeline must survive."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


@pytest.fixture
def pipeline_settings(settings: Settings) -> Iterator[Settings]:
    """The session's settings with topics and consumer groups of this test only; its topics are
    deleted afterwards (after `services` stopped the processes)."""
    run = uuid.uuid4().hex[:8]
    s = settings.model_copy(update={"topic_prefix": f"e2e-{run}", "worker_id": f"worker-{run}",
                                    "sink_group": f"sink-{run}"})
    ensure_topics(s)
    yield s
    try:  # a broker that keeps every test's topics runs out of heap (measured: 14,850 partitions, 512 MiB)
        delete_topics(s, f"{s.topic_prefix}.", f"{s.worker_id}-")
    except Exception as exc:  # cleanup must not turn a passed test into an error
        warnings.warn(f"could not delete the topics of this test: {exc!r}")


_PORTS = ("worker_web_port", "worker_admin_port", "sink_admin_port", "notify_admin_port")


@pytest.fixture
def services(pipeline_settings: Settings, tmp_path: Path) -> Iterator[Callable[..., Service]]:
    """Factory: services("worker") / services("sink") start real subprocesses; all stopped at the end.

    `services("worker", "--loglevel", "info")` passes arguments; `settings=` replaces the test's
    settings (e.g. a sink on another database); keywords are extra environment variables.
    """
    started: list[Service] = []

    def start(command: str, *args: str, settings: Settings | None = None, **extra_env: str) -> Service:
        s = settings or pipeline_settings
        # ports left at their defaults get free ones (processes of parallel tests never collide)
        ports = {f"MIMETIC_{name.upper()}": str(free_loopback_port()) for name in _PORTS
                 if getattr(s, name) == Settings.model_fields[name].default}
        env = {**os.environ, **s.as_env(), **ports, **extra_env}
        svc = Service([command, *args], env, tmp_path / f"{command}-{len(started)}.log").start()
        started.append(svc)
        return svc

    yield start
    for svc in started:
        svc.stop()


def wait_for(check: Callable[[], bool], timeout_s: float, what: str, logs: list[Service] = (),
             each_poll: Callable[[], None] = lambda: None) -> None:
    """Poll `check` every second; `each_poll` runs before every poll (e.g. a test's supervisor)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        each_poll()
        if check():
            return
        time.sleep(1.0)
    tails = "\n\n".join(f"--- {s.command} log ---\n{s.log_tail()}" for s in logs)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}\n{tails}")


def query(s: Settings, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(s.db_dsn(), autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


@contextlib.contextmanager
def streaming(sim: Simulation, s: Settings, **options) -> Iterator[Future]:
    """`run_simulation(sim, s, via="kafka", **options)` in a background thread, as a future;
    cancelled when the block is left before it finished (a failed test does not wait for it)."""
    stop = threading.Event()

    async def run() -> dict:
        task = asyncio.ensure_future(run_simulation(sim, s, via="kafka", **options))
        while not task.done() and not stop.is_set():
            await asyncio.wait({task}, timeout=0.5)
        task.cancel()
        return await task

    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(asyncio.run, run())
        try:
            yield future
        finally:
            stop.set()
            with contextlib.suppress(Exception, CancelledError):
                future.result(timeout=60)


# --- what an undisturbed run stores ------------------------------------------------------------


#: faults whose alerts do not depend on how the worker interleaves the frames, telemetry and events
#: topics (low battery starts with the session; lift-off combines telemetry with the signal; a silent
#: device is seen by the wall-clock tick); the signal faults are in the frames alone
DETERMINISTIC_FAULTS = ("over_current", "impedance_drift", "packet_loss", "duplicates", "reordering", "clipping",
                        "mains_interference")


def keep_deterministic_faults(sim: Simulation) -> Simulation:
    """Only the `DETERMINISTIC_FAULTS` of a simulation made with faults, so a disturbed run's alerts,
    activations and session summaries can be compared with an undisturbed one's."""
    for plans in sim.plans:
        for plan in plans:
            plan.faults = [f for f in plan.faults if f.type in DETERMINISTIC_FAULTS]
    return sim


def expected_envelopes(sim: Simulation, params: WorkerParams) -> dict[tuple, np.ndarray]:
    """What an undisturbed worker writes: every device's frames through one DeviceProcessor."""
    out: dict[tuple, np.ndarray] = {}
    for i, device in enumerate(sim.device_ids):
        dp = DeviceProcessor(device, params)
        for rec in sim.device_records(i):
            if rec.kind != wire.KIND_FRAME:
                continue
            recs, _late = dp.on_frame(rec.item, wire.encode_frame(rec.item))
            for r in recs:
                if isinstance(r, R.EnvelopeFrame):
                    out[(r.device_id, r.time, r.seq)] = r.array
    return out


def _f32(x: float | None) -> float | None:
    return None if x is None else float(np.float32(x))


def _alert_key(r) -> tuple:
    return (r.alert_id, r.state, r.time)


def expected_records(sim: Simulation, params: WorkerParams) -> dict[str, dict[tuple, tuple]]:
    """What an undisturbed worker stores besides envelopes: alert events, activations and final
    session summaries, from every device's records (frames, telemetry, events in send order) through
    one DeviceProcessor; keyed as the tables are, values as `stored_records` reads them."""
    out: dict[str, dict[tuple, tuple]] = {"alert_event": {}, "activation": {}, "session_summary": {}}
    for i, device in enumerate(sim.device_ids):
        dp = DeviceProcessor(device, params)
        for rec in sim.device_records(i):
            if rec.kind == wire.KIND_FRAME:
                recs, _late = dp.on_frame(rec.item, wire.encode_frame(rec.item))
            elif rec.kind == wire.KIND_TELEMETRY:
                recs = dp.on_telemetry(rec.item)
            else:
                recs = dp.on_event(rec.item)
            for r in recs:
                if isinstance(r, R.AlertRecord):
                    out["alert_event"][(r.alert_id, r.state, r.time)] = (
                        r.session_id, r.alert_type, r.channel, _f32(r.value))
                elif isinstance(r, R.ActivationRecord):
                    out["activation"][(r.device_id, r.channel, r.onset)] = (
                        r.offset, _f32(r.peak_uv), _f32(r.mean_uv), _f32(r.area_uv_s))
                elif isinstance(r, R.SessionSummary):
                    key = (r.session_id,)
                    if key not in out["session_summary"] or r.revision >= out["session_summary"][key][-1]:
                        out["session_summary"][key] = (
                            r.status, r.started_at, r.ended_at, r.frames, r.missing_frames, r.duplicates, r.alerts,
                            r.tasks, r.discomfort, r.skin_reaction, _f32(r.max_stim_current_ua), r.revision)
    return out


def stored_records(s: Settings, prefix: str) -> dict[str, dict[tuple, tuple]]:
    """The alert_event, activation and session_summary rows of devices whose id starts with `prefix`."""
    like = (prefix + "%",)
    with psycopg.connect(s.db_dsn()) as conn:
        alerts = conn.execute("select alert_id, state, time, session_id, alert_type, channel, value "
                              "from alert_event where device_id like %s", like).fetchall()
        acts = conn.execute("select device_id, channel, onset, offset_at, peak_uv, mean_uv, area_uv_s "
                            "from activation where device_id like %s", like).fetchall()
        sums = conn.execute("select session_id, status, started_at, ended_at, frames, missing_frames, duplicates, "
                            "alerts, tasks, discomfort, skin_reaction, max_stim_current_ua, revision "
                            "from session_summary where device_id like %s", like).fetchall()
    return {"alert_event": {tuple(r[:3]): (r[3], r[4], r[5], _f32(r[6])) for r in alerts},
            "activation": {tuple(r[:3]): (r[3], _f32(r[4]), _f32(r[5]), _f32(r[6])) for r in acts},
            "session_summary": {(r[0],): tuple(r[1:11]) + (_f32(r[11]), r[12]) for r in sums}}


def assert_records_as_expected(stored: dict[str, dict[tuple, tuple]], expected: dict[str, dict[tuple, tuple]],
                               context: str = "") -> None:
    """Per table: the same keys (no loss, no extra row) and equal values; a failure names the rows."""
    problems = []
    for table, want in expected.items():
        got = stored[table]
        missing, extra = sorted(set(want) - set(got), key=str), sorted(set(got) - set(want), key=str)
        wrong = sorted((k for k in set(want) & set(got) if want[k] != got[k]), key=str)
        if missing or extra or wrong:
            problems.append(f"{table}: {len(got)} stored, {len(want)} expected; missing {missing[:5]}; "
                            f"extra {[(k, got[k]) for k in extra[:5]]}; "
                            f"differing {[(k, want[k], got[k]) for k in wrong[:5]]}")
    assert not problems, f"{context}: " + "\n".join(problems)


def stored_envelopes(s: Settings, prefix: str) -> dict[tuple, np.ndarray]:
    """The envelope rows in the database of `s` for devices whose id starts with `prefix`."""
    with psycopg.connect(s.db_dsn()) as conn:
        rows = conn.execute("select device_id, time, seq, env from envelope where device_id like %s",
                            (prefix + "%",)).fetchall()
    return {(d, t, q): np.asarray(env, dtype=np.float32) for d, t, q, env in rows}


def envelope_count(s: Settings, prefix: str) -> int:
    return query(s, "select count(*) from envelope where device_id like %s", (prefix + "%",))[0][0]


def wait_for_rows(s: Settings, prefix: str, n: int, timeout_s: float, stall_s: float,
                  each_poll: Callable[[], None] = lambda: None) -> str:
    """Wait until `n` envelope rows of `prefix` are stored, at most `timeout_s`, and stop early when
    the count has not grown for `stall_s` (a stuck pipeline, not a slow one). Says how it ended,
    for the message of `assert_exactly_expected`, which then names the missing rows."""
    t0 = time.monotonic()
    last, last_change = -1, t0
    while True:
        each_poll()
        count = envelope_count(s, prefix)
        now = time.monotonic()
        if count >= n:
            return f"{count} rows after {now - t0:.0f} s"
        if count != last:
            last, last_change = count, now
        if now - last_change >= stall_s:
            return f"stuck at {count} of {n} rows for {stall_s:.0f} s"
        if now - t0 >= timeout_s:
            return f"{count} of {n} rows after {timeout_s:.0f} s"
        time.sleep(1.0)


def assert_exactly_expected(stored: dict[tuple, np.ndarray], expected: dict[tuple, np.ndarray],
                            context: str = "") -> None:
    """Same keys (no loss, no extra row) and bit-equal arrays; a failure names the rows per device."""

    def by_device(keys: set[tuple]) -> str:
        seqs: dict[str, list[int]] = {}
        for device, _t, seq in keys:
            seqs.setdefault(device, []).append(seq)
        return ", ".join(f"{d}: {len(q)} (seq {min(q)}..{max(q)})" for d, q in sorted(seqs.items()))

    missing, extra = set(expected) - set(stored), set(stored) - set(expected)
    assert not missing and not extra, (
        f"{context}: {len(stored)} rows stored, {len(expected)} expected; missing {len(missing)} "
        f"[{by_device(missing)}]; extra {len(extra)} [{by_device(extra)}]")
    for key, env in expected.items():
        np.testing.assert_array_equal(stored[key], env.astype(np.float32), err_msg=str(key))


# --- Kafka, seen from outside the processes ----------------------------------------------------


def group_members(s: Settings, group: str, topic: str) -> dict[str, set[int]]:
    """Member id -> partitions of `topic` assigned to it, as the group coordinator sees it now
    (empty while the group rebalances)."""
    from kafka import KafkaAdminClient

    # Faust's member metadata carries its own user data, which kafka-python warns it cannot decode
    logging.getLogger("kafka.admin._groups").setLevel(logging.ERROR)
    admin = KafkaAdminClient(bootstrap_servers=s.kafka_bootstrap, client_id="mimetic-test")
    try:
        desc = admin.describe_groups([group])[group]
    finally:
        admin.close()
    if desc.get("group_state") != "Stable":
        return {}
    out: dict[str, set[int]] = {}
    for m in desc.get("members", []):
        parts: set[int] = set()
        assignment = m.get("member_assignment") or {}
        for t in assignment.get("assigned_partitions", assignment.get("assignment", [])) or []:
            name, partitions = (t["topic"], t["partitions"]) if isinstance(t, dict) else t
            if name == topic:
                parts.update(partitions)
        out[m["member_id"]] = parts
    return out


def committed_offsets(s: Settings, group: str, topic: str) -> dict[int, int]:
    """Partition -> offset committed by `group` on `topic` (partitions without a commit left out)."""
    return {tp.partition: offset for tp, offset in kafka_admin.committed_offsets(s, group).items()
            if tp.topic == topic}


def end_offsets(s: Settings, topic: str) -> dict[int, int]:
    """Partition -> end offset (log end, transaction markers included) of `topic`."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=s.kafka_bootstrap, client_id="mimetic-test")
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return {tp.partition: o for tp, o in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()

"""A three-node Kafka cluster loses a broker mid-stream without losing data: honest simulated
devices stream through the real gateway (WebSocket), worker and sink; one broker is lost while
they stream and comes back later. Every frame is acknowledged (202) in the end and the database
holds exactly the envelope rows an undisturbed run computes, bit for bit: no loss, no duplicate.

Two ways to lose it:

* ``kill``: SIGKILL (no controlled shutdown; its connections are reset), started again later;
* ``freeze``: SIGSTOP, then SIGCONT later. Its sockets stay open and nothing answers, as behind a
  network that drops every packet, in both directions (a TCP proxy in front of its listener would
  cut only the clients' side: the node would keep heartbeating to the controller, stay leader of
  its partitions and hold them unavailable for as long as the cut lasts). It comes back fenced,
  with a stale view, and must truncate and catch up.

The cluster is private (`private_cluster`: free loopback ports, its own home), every topic on 3
replicas with min.insync.replicas 2, so an acknowledged record is on two brokers before the
gateway answers. The test plays the supervisor a deployment has: a worker or sink that exits is
started again and counted.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

from ingest import wire
from ingest.runner import register_simulation, run_simulation
from ingest.simulator import Simulation
from mimetic.config import Settings
from mimetic.kafka_admin import ensure_topics
from mimetic.stack import kafka
from mimetic.topics import RAW_FRAMES
from processors.worker.device import WorkerParams
from tests.ingest.conftest import GatewayProc

from .conftest import (Service, assert_exactly_expected, envelope_count, expected_envelopes, stored_envelopes,
                       wait_for, wait_for_rows)

pytestmark = [pytest.mark.stack, pytest.mark.slow]

PREFIX = "e2e-loss"
VICTIM = 1          # the first bootstrap address: clients must find the others
STREAM_S = 75       # device time, streamed in real time
KILL_AT_S = 15.0    # into the stream (once rows are stored)
OUTAGE_S = 15.0     # then the node starts again (its log recovery overlaps the stream)
#: longer than the cluster's failover (the controller fences a dead broker after
#: broker.session.timeout.ms, 9 s; acks=all waits for it until then): see the README
GATEWAY_KAFKA_TIMEOUT_S = 20.0


@pytest.fixture
def pipeline_settings(settings: Settings, private_cluster: Settings) -> Iterator[Settings]:
    """The session's database with this test's topics and groups on the private cluster (wiped
    with it afterwards)."""
    run = uuid.uuid4().hex[:8]
    s = settings.model_copy(update={"topic_prefix": f"e2e-{run}", "worker_id": f"worker-{run}",
                                    "sink_group": f"sink-{run}", "topic_replication": None,
                                    "kafka_bootstrap": private_cluster.kafka_bootstrap,
                                    "kafka_brokers": private_cluster.kafka_brokers})
    ensure_topics(s)
    yield s


def _replication(s: Settings, topic: str) -> tuple[int, int, str]:
    """(fewest replicas, fewest in-sync replicas over the topic's partitions, its min.insync.replicas)."""
    admin = KafkaAdminClient(bootstrap_servers=s.bootstrap_servers(), client_id="mimetic-test")
    try:
        [described] = admin.describe_topics([topic])
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        admin.close()
    parts = described["partitions"]
    assert parts, described
    return (min(len(p["replica_nodes"]) for p in parts), min(len(p["isr_nodes"]) for p in parts),
            configs["topic"][topic]["min.insync.replicas"]["value"])


def _supervise(services: list[Service], restarts: dict[str, int]) -> None:
    """Start again any service that exited (what a deployment's supervisor does)."""
    for svc in services:
        if not svc.alive():
            restarts[svc.command[0]] = restarts.get(svc.command[0], 0) + 1
            svc.start()


def _lose(cluster: Settings, fault: str) -> int:
    """Take node VICTIM away; returns its pid."""
    if fault == "kill":
        return kafka.kill(cluster, VICTIM)
    pid = kafka.node_pid(cluster, VICTIM)
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    return pid


def _bring_back(cluster: Settings, fault: str, pid: int) -> float:
    """Start (or thaw) node VICTIM and wait until it answers and sees the cluster; returns seconds."""
    t0 = time.monotonic()
    if fault == "freeze":
        os.kill(pid, signal.SIGCONT)
    kafka.start(cluster, only=VICTIM)
    return time.monotonic() - t0


@pytest.mark.parametrize("fault", ["kill", "freeze"])
def test_a_broker_lost_mid_stream_loses_nothing(fault: str, pipeline_settings: Settings,
                                                private_cluster: Settings, services) -> None:
    s, cluster = pipeline_settings, private_cluster
    prefix = f"{PREFIX}-{fault}"   # the session's database keeps the other case's rows
    raw = RAW_FRAMES.name(s)
    assert _replication(s, raw) == (3, 3, "2")

    sim = Simulation(patients=3, sessions=1, duration_s=STREAM_S, seed=45, fault_prob=0.0, device_prefix=prefix)
    expected = expected_envelopes(sim, WorkerParams.from_settings(s))
    n = len(expected)
    n_frames = sum(1 for i in range(len(sim.device_ids)) for r in sim.device_records(i)
                   if r.kind == wire.KIND_FRAME)
    secrets = register_simulation(sim, s, kdf_n=2**10)
    gw = GatewayProc(s, MIMETIC_GATEWAY_KAFKA_TIMEOUT_S=str(GATEWAY_KAFKA_TIMEOUT_S))
    s = s.model_copy(update={"gateway_url": gw.url})
    restarts: dict[str, int] = {}
    procs = [services("sink"), services("worker", "--loglevel", "info")]
    pid: int | None = None

    def supervise() -> None:
        _supervise(procs, restarts)

    try:
        gw.wait_healthy()
        with ThreadPoolExecutor(2) as pool:
            stream = pool.submit(asyncio.run, run_simulation(sim, s, via="gateway", secrets=secrets,
                                                             transport="ws", realtime=True))
            t0 = time.monotonic()
            wait_for(lambda: envelope_count(s, prefix) > 0 and time.monotonic() - t0 >= KILL_AT_S, 120,
                     "the first envelope rows", procs, supervise)
            before = envelope_count(s, prefix)
            pid = _lose(cluster, fault)
            down_at = time.monotonic()
            assert not stream.done() and before < n, "the broker must be lost mid-stream"
            wait_for(lambda: time.monotonic() - down_at >= OUTAGE_S, 2 * OUTAGE_S, "the outage", procs, supervise)
            during = envelope_count(s, prefix)
            restart_at_s = time.monotonic() - t0
            restart = pool.submit(_bring_back, cluster, fault, pid)
            assert not stream.done(), f"the broker must come back mid-stream ({restart_at_s:.0f} s of {STREAM_S})"
            wait_for(stream.done, 180, "the devices to finish streaming", procs, supervise)
            stats = stream.result(timeout=10)
            restart_s = restart.result(timeout=120)   # answering, and the cluster sees all three nodes
        assert gw.proc.poll() is None, "the gateway exited"
    finally:
        gw.stop()
        if fault == "freeze" and pid is not None:
            os.kill(pid, signal.SIGCONT)   # a stopped node would not stop at the teardown

    acked = sum(d["by_kind"].get(wire.KIND_FRAME, 0) for d in stats["devices"].values())
    refused = {dev: d["reasons"] for dev, d in stats["devices"].items() if d["rejected"]}
    assert acked == n_frames and not refused, f"{acked} of {n_frames} frames acknowledged; refused {refused}"
    how = wait_for_rows(s, prefix, n, 120, stall_s=30, each_poll=supervise)
    time.sleep(3)  # anything extra would show up now
    assert_exactly_expected(stored_envelopes(s, prefix), expected, f"{how} (process restarts {restarts})")

    # the restarted broker caught up: every replica of the raw frames back in sync
    wait_for(lambda: _replication(s, raw)[1] == 3, 60, "the restarted broker to rejoin the ISR")
    retries = sum(d["retries"] for d in stats["devices"].values())
    print(f"\n{fault}: {before} of {n} rows before node {VICTIM} (pid {pid}) was lost, {during} when it "
          f"came back {restart_at_s:.0f} s into the stream (answering {restart_s:.0f} s later); "
          f"{acked} frames acknowledged, {retries} resent after 503/disconnect; {how}; process "
          f"restarts {restarts or 'none'}")

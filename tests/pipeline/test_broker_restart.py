"""Nothing lost, nothing doubled when the Kafka broker restarts: devices stream in real time through
the worker and the sink, the broker is stopped mid-stream, stays down for 15 s and comes back, and
the database ends up with exactly the envelope rows an undisturbed run computes.

The broker is a private one on free loopback ports (`private_stack`), never the shared one. The
test plays the process supervisor a deployment has: a worker or sink that exits is started again
(and counted), as systemd or Kubernetes would.
"""

from __future__ import annotations

import time

import pytest

from ingest.simulator import Simulation
from mimetic.config import Settings
from mimetic.kafka_admin import ensure_topics
from mimetic.stack import kafka
from processors.worker.device import WorkerParams

from .conftest import (Service, assert_exactly_expected, assert_records_as_expected, expected_records,
                       keep_deterministic_faults, stored_records, envelope_count, expected_envelopes, stored_envelopes,
                       streaming, wait_for, wait_for_rows)

pytestmark = [pytest.mark.stack, pytest.mark.slow]

PREFIX = "e2e-brk"
OUTAGE_S = 15.0


def _supervise(services: list[Service], restarts: dict[str, int]) -> None:
    """Start again any service that exited (what a deployment's supervisor does)."""
    for svc in services:
        if not svc.alive():
            restarts[svc.command[0]] = restarts.get(svc.command[0], 0) + 1
            svc.start()


def test_broker_restarted_mid_stream_gives_exactly_the_undisturbed_rows(
        pipeline_settings: Settings, private_stack: Settings, services) -> None:
    # this test's topics and groups, on a private broker; the database stays the shared test one
    broker = private_stack
    s = pipeline_settings.model_copy(update={"kafka_bootstrap": broker.kafka_bootstrap})
    kafka.start(broker)
    ensure_topics(s)
    sim = keep_deterministic_faults(Simulation(patients=2, sessions=1, duration_s=75, seed=44, fault_prob=1.0,
                                               device_prefix=PREFIX))
    expected = expected_envelopes(sim, WorkerParams.from_settings(s))
    expected_rows = expected_records(sim, WorkerParams.from_settings(s))
    assert expected_rows["alert_event"] and expected_rows["activation"], expected_rows
    n = len(expected)

    restarts: dict[str, int] = {}
    procs = [services("sink", settings=s), services("worker", "--loglevel", "info", settings=s)]

    def supervise() -> None:
        _supervise(procs, restarts)

    with streaming(sim, s, realtime=True) as stream:
        wait_for(lambda: envelope_count(s, PREFIX) >= n // 10, 90, "the first envelope rows", procs, supervise)
        before = envelope_count(s, PREFIX)

        kafka.stop(broker)
        down_at = time.monotonic()
        assert not stream.done() and before < n, "the restart must happen mid-stream"
        wait_for(lambda: time.monotonic() - down_at >= OUTAGE_S, 2 * OUTAGE_S, "the outage", procs, supervise)
        during = envelope_count(s, PREFIX)
        kafka.start(broker)
        up_at = time.monotonic()
        assert not stream.done(), "the broker must come back mid-stream (the stream is too short)"

        wait_for(stream.done, 180, "the devices to finish streaming", procs, supervise)
        stream.result(timeout=10)  # every frame acknowledged by the broker (a send error fails here)

    how = wait_for_rows(s, PREFIX, n, 240, stall_s=60, each_poll=supervise)
    time.sleep(3)  # anything extra would show up now
    assert_exactly_expected(stored_envelopes(s, PREFIX), expected, f"{how} (process restarts {restarts})")
    assert_records_as_expected(stored_records(s, PREFIX), expected_rows, f"{how} (process restarts {restarts})")
    print(f"{before} of {n} rows before the broker stopped, {during} when it started again; all rows "
          f"{time.monotonic() - up_at:.0f} s after it was back; process restarts {restarts or 'none'}")

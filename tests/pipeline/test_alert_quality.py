"""Alert quality against the simulator's truth (`mimetic bench alerts` in small): every injected
fault raised and cleared within its documented latency, and no alert without a fault behind it.
Simulated sessions go through `DeviceProcessor` directly, with the worker's tick simulated."""

from __future__ import annotations

import pytest

from ingest.simulator import FAULT_ALERT
from processors.worker.alert_bench import BenchShape, markdown, simulate, score
from processors.worker.device import WorkerParams

TICK_S = 2.0
WORKERS = 2


def test_every_injected_fault_is_raised_and_cleared_within_its_documented_latency() -> None:
    """One 90 s session per fault kind and mains frequency (16), 2 channels, 250 ms frames; 50 Hz
    devices state their mains, 60 Hz ones are detected (and the other way round by device index)."""
    shape = BenchShape(sessions=1, duration_s=90.0, fault_free_sessions=0)
    report = score(simulate(shape, WorkerParams(), TICK_S))
    table = report["alerts"]
    for kind in set(FAULT_ALERT.values()):
        row = table[kind]
        assert row["injected"] >= 2 and row["raised"] == row["injected"], markdown(report)
        assert row["cleared"] == row["raised"], markdown(report)
        assert row["raise_latency_s"]["max"] <= row["documented_raise_within_s"], (kind, markdown(report))
        assert row["clear_latency_s"]["max"] <= row["documented_clear_within_s"], (kind, markdown(report))
    false = {k: r["false_examples"] for k, r in table.items() if r["false"]}
    assert not false, false


@pytest.mark.slow
@pytest.mark.timeout(1800)  # a loaded shared machine gives it a third of a core per process
def test_no_false_alert_in_40_fault_free_session_hours() -> None:
    """80 fault-free 30-minute sessions (40 per mains frequency, two per device an hour apart, half
    the devices stating their mains), at what the bench runs for the README: 2 channels, 2 kHz,
    1 s frames (the wire's longest), ticks every 2 s. Devices run in 2 processes (identical
    results: `test_parallel_devices_give_the_same_report`); measured 264-305 s CPU, 230 s wall
    on the shared 2 cores at load 3.4 (888 s at load 10-14)."""
    shape = BenchShape(sessions=0, fault_free_sessions=40, fault_free_s=1800.0, faults=())
    report = score(simulate(shape, WorkerParams(), TICK_S, workers=WORKERS))
    assert report["session_hours"] == pytest.approx(40.0)
    assert report["sessions"] == 80
    false = {k: r["false_examples"] for k, r in report["alerts"].items() if r["false"]}
    assert not false, false


def test_parallel_devices_give_the_same_report() -> None:
    """Running devices in processes changes nothing in the report (order included)."""
    shape = BenchShape(sessions=1, duration_s=40.0, fault_free_sessions=1, fault_free_s=40.0,
                       faults=("over_current", "silent_device"))
    one = score(simulate(shape, WorkerParams(), TICK_S, workers=1))
    two = score(simulate(shape, WorkerParams(), TICK_S, workers=2))
    assert one == two
    assert one["alerts"]["over_current"]["injected"] >= 1

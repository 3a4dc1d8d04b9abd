"""Alert quality against the simulator's truth (`mimetic bench alerts` in small): every injected
fault raised and cleared within its documented latency, and no alert without a fault behind it.
Simulated sessions go through `DeviceProcessor` directly, with the worker's tick simulated."""

from __future__ import annotations

import pytest

from ingest.simulator import FAULT_ALERT
from processors.worker.alert_bench import BenchShape, markdown, simulate, score
from processors.worker.device import WorkerParams

TICK_S = 2.0


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
def test_no_false_alert_in_16_fault_free_session_hours() -> None:
    """32 fault-free 30-minute sessions (16 per mains frequency, two per device an hour apart), at
    2 channels, 1 kHz and 1 s frames to fit the CI budget (measured: 101 s CPU, 185 s wall on the
    shared, loaded 2 cores); the signal alerts are framing-independent. 40 h (the issue's bar) do not
    fit: `mimetic bench alerts` runs 40 h at 2 kHz for the README (328 s CPU)."""
    shape = BenchShape(sessions=0, fault_free_sessions=16, fault_free_s=1800.0, fs_hz=1000, faults=())
    report = score(simulate(shape, WorkerParams(), TICK_S))
    assert report["session_hours"] == pytest.approx(16.0)
    false = {k: r["false_examples"] for k, r in report["alerts"].items() if r["false"]}
    assert not false, false

"""Nothing lost, nothing doubled: the worker is SIGKILLed mid-stream several times and restarted,
and the database ends up with exactly the rows an undisturbed run computes: envelopes, alert events,
activations and session summaries, with device faults injected."""

from __future__ import annotations

import time

import pytest

from ingest.simulator import Simulation
from mimetic.config import Settings
from processors.worker.device import WorkerParams

from .conftest import (Service, assert_exactly_expected, assert_records_as_expected, envelope_count,
                       expected_envelopes, keep_deterministic_faults, expected_records, stored_envelopes, stored_records, streaming, wait_for,
                       wait_for_rows)

pytestmark = [pytest.mark.stack, pytest.mark.slow]


def _restored(worker: Service) -> int:
    """Device states this worker restored from the changelog (its info log says so)."""
    return worker.log_text().count("restored e2e-kill")



def test_worker_killed_three_times_writes_exactly_the_undisturbed_rows(pipeline_settings: Settings,
                                                                        services) -> None:
    s = pipeline_settings
    sim = Simulation(patients=2, sessions=1, duration_s=60, seed=41, fault_prob=1.0, device_prefix="e2e-kill",
                     therapy_types=("microcurrent",))
    keep_deterministic_faults(sim)
    params = WorkerParams.from_settings(s)
    expected = expected_envelopes(sim, params)
    expected_rows = expected_records(sim, params)
    assert len(expected_rows["alert_event"]) >= 8 and len(expected_rows["activation"]) >= 20, expected_rows
    # a killed worker's partitions move after the group session timeout: the broker's minimum, 6 s
    start_worker = lambda: services("worker", "--loglevel", "info", MIMETIC_WORKER_GROUP_TIMEOUT_S="6")  # noqa: E731
    sink = services("sink")
    worker = start_worker()
    # 60 s of device time streamed in ~40 s, so that every kill lands while frames are still arriving
    with streaming(sim, s, realtime=True, speed=1.5) as feed:
        wait_for(lambda: envelope_count(s, "e2e-kill") > 0, 60, "the first envelope rows", [worker, sink])
        for _kill in range(3):
            time.sleep(1.5)  # let it process for a moment
            assert not feed.done(), "the stream ended before the kill: the test would prove nothing"
            worker.kill()
            worker = start_worker()
            # it continues from the saved states once the group has handed it the partitions
            wait_for(lambda: _restored(worker) > 0, 60, "the restarted worker to restore device states",
                     [worker])
        feed.result(timeout=120)
    how = wait_for_rows(s, "e2e-kill", len(expected), timeout_s=300, stall_s=60)
    time.sleep(3)  # anything extra would show up now
    assert_exactly_expected(stored_envelopes(s, "e2e-kill"), expected, how)
    assert_records_as_expected(stored_records(s, "e2e-kill"), expected_rows, how)
    assert "Traceback" not in worker.log_tail(200)

"""Nothing lost, nothing doubled: the worker is SIGKILLed mid-stream several times and restarted,
and the database ends up with exactly the envelope rows an undisturbed run computes."""

from __future__ import annotations

import asyncio
import time

import pytest

from ingest.runner import run_simulation
from ingest.simulator import Simulation
from mimetic.config import Settings
from processors.worker.device import WorkerParams

from .conftest import assert_exactly_expected, envelope_count, expected_envelopes, stored_envelopes, wait_for

pytestmark = [pytest.mark.stack, pytest.mark.slow]


@pytest.mark.xfail(strict=False, reason=(
    "open in issue 5: passes in most runs (2 of 3 in the last 6 runs), but after a SIGKILL the restored "
    "state can still lag the committed input offsets by one frame, which the sequence rule turns into a "
    "one-frame gap (a filter restart and one extra envelope row). Two causes are fixed (see "
    "processors/worker/app.py: in-order changelog sends, recovery highwaters); one is not yet found."))
def test_worker_killed_three_times_writes_exactly_the_undisturbed_rows(pipeline_settings: Settings,
                                                                        services) -> None:
    s = pipeline_settings
    sim = Simulation(patients=2, sessions=1, duration_s=60, seed=41, fault_prob=0.0, device_prefix="e2e-kill")
    expected = expected_envelopes(sim, WorkerParams.from_settings(s))
    sink = services("sink")
    worker = services("worker")
    asyncio.run(run_simulation(sim, s, via="kafka"))
    for kill_after_s in (6.0, 5.0, 5.0):
        time.sleep(kill_after_s)
        worker.kill()
        worker = services("worker")
    n = len(expected)
    wait_for(lambda: envelope_count(s, "e2e-kill") >= n, 300, f"{n} envelope rows", [worker, sink])
    time.sleep(3)  # anything extra would show up now
    assert_exactly_expected(stored_envelopes(s, "e2e-kill"), expected)
    # the kills really happened mid-stream: the worker recovered its state from the changelog
    assert "Traceback" not in worker.log_tail(200)

"""Nothing lost, nothing doubled: the worker is SIGKILLed mid-stream several times and restarted,
and the database ends up with exactly the envelope rows an undisturbed run computes."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import psycopg
import pytest

from ingest import wire
from ingest.runner import run_simulation
from ingest.simulator import Simulation
from mimetic.config import Settings
from processors import records as R
from processors.worker.device import DeviceProcessor, WorkerParams

from .conftest import query, wait_for

pytestmark = [pytest.mark.stack, pytest.mark.slow]


def _expected_envelopes(sim: Simulation, params: WorkerParams) -> dict[tuple, np.ndarray]:
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


def _stored(s: Settings, prefix: str) -> dict[tuple, np.ndarray]:
    with psycopg.connect(s.db_dsn()) as conn:
        rows = conn.execute("select device_id, time, seq, env from envelope where device_id like %s",
                            (prefix + "%",)).fetchall()
    return {(d, t, q): np.asarray(env, dtype=np.float32) for d, t, q, env in rows}


def _restored(worker) -> int:
    """Device states this worker restored from the changelog (its info log says so)."""
    try:
        return worker.log_path.read_text(errors="replace").count("restored e2e-kill")
    except OSError:
        return 0


def test_worker_killed_three_times_writes_exactly_the_undisturbed_rows(pipeline_settings: Settings,
                                                                        services) -> None:
    s = pipeline_settings
    sim = Simulation(patients=2, sessions=1, duration_s=60, seed=41, fault_prob=0.0, device_prefix="e2e-kill")
    expected = _expected_envelopes(sim, WorkerParams.from_settings(s))
    n = len(expected)
    count = "select count(*) from envelope where device_id like %s"
    # a killed worker's partitions move after the group session timeout: the broker's minimum, 6 s
    start_worker = lambda: services("worker", "--loglevel", "info", MIMETIC_WORKER_GROUP_TIMEOUT_S="6")  # noqa: E731
    sink = services("sink")
    worker = start_worker()
    # 60 s of device time streamed in ~40 s, so that every kill lands while frames are still arriving
    feeder = threading.Thread(target=lambda: asyncio.run(run_simulation(sim, s, via="kafka", realtime=True,
                                                                        speed=1.5)))
    feeder.start()
    wait_for(lambda: query(s, count, ("e2e-kill%",))[0][0] > 0, 60, "the first envelope rows", [worker, sink])
    for _kill in range(3):
        time.sleep(1.5)  # let it process for a moment
        assert feeder.is_alive(), "the stream ended before the kill: the test would prove nothing"
        worker.kill()
        worker = start_worker()
        # it continues from the saved states once the group has handed it the partitions
        wait_for(lambda: _restored(worker) > 0, 60, "the restarted worker to restore device states",
                 [worker])
    feeder.join(120)
    wait_for(lambda: query(s, count, ("e2e-kill%",))[0][0] >= n, 300, f"{n} envelope rows", [worker, sink])
    time.sleep(3)  # anything extra would show up now
    assert query(s, count, ("e2e-kill%",))[0][0] == n
    stored = _stored(s, "e2e-kill")
    assert set(stored) == set(expected), (len(stored), len(expected))
    for key, env in expected.items():
        np.testing.assert_array_equal(stored[key], env.astype(np.float32))
    assert "Traceback" not in worker.log_tail(200)

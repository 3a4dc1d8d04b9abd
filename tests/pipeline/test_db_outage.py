"""Nothing lost, nothing doubled when the database goes away: worker and sink run while devices
stream in real time, the database is stopped for 30 s mid-stream and started again, and it ends
up with exactly the envelope rows an undisturbed run computes.

The database is a private PostgreSQL cluster (`private_pg`), never the shared one. Everything is
checked from outside the processes: the sink's Prometheus metrics, Kafka offsets, database rows.
"""

from __future__ import annotations

import time
import urllib.request

import pytest

from ingest.simulator import Simulation
from mimetic import topics as T
from mimetic.config import Settings
from mimetic.net import free_loopback_port
from mimetic.stack import postgres
from processors.worker.device import WorkerParams

from .conftest import (assert_exactly_expected, assert_records_as_expected, expected_records,
                       keep_deterministic_faults, stored_records, committed_offsets, end_offsets, envelope_count, expected_envelopes,
                       stored_envelopes, streaming,
                       wait_for, wait_for_rows)

pytestmark = [pytest.mark.stack, pytest.mark.slow]

PREFIX = "e2e-dbout"
OUTAGE_S = 30.0


def _metric(port: int, name: str) -> float | None:
    """One unlabelled sample of the sink's /metrics (None if the endpoint or sample is missing)."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3).read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def test_database_stopped_30s_mid_stream_gives_exactly_the_undisturbed_rows(
        pipeline_settings: Settings, private_pg: Settings, services) -> None:
    s = pipeline_settings
    # the sink writes to the private cluster; Kafka topics and groups are this test's own
    db = s.model_copy(update={k: getattr(private_pg, k) for k in ("home", "pg_port", "pg_password", "pg_database")})
    metrics_port = free_loopback_port()
    sim = keep_deterministic_faults(Simulation(patients=2, sessions=1, duration_s=75, seed=43, fault_prob=1.0,
                                               device_prefix=PREFIX))
    expected = expected_envelopes(sim, WorkerParams.from_settings(s))
    expected_rows = expected_records(sim, WorkerParams.from_settings(s))
    assert expected_rows["alert_event"] and expected_rows["activation"], expected_rows
    n = len(expected)
    features = T.FEATURES.name(s)

    sink = services("sink", settings=db.model_copy(update={"sink_retry_max_s": 2.0,
                                                           "sink_admin_port": metrics_port}))
    worker = services("worker")
    with streaming(sim, s, realtime=True) as stream:

        # the pipeline is flowing into the private database
        wait_for(lambda: envelope_count(db, PREFIX) >= n // 10, 90, "the first envelope rows", [worker, sink])
        before = envelope_count(db, PREFIX)
        postgres.stop(db)
        down_at = time.monotonic()
        assert not stream.done() and before < n, "the outage must start mid-stream"

        # the sink notices: database marked down, the same batch retried
        wait_for(lambda: _metric(metrics_port, "mimetic_sink_db_up") == 0.0, 20, "the sink to see the database down",
                 [sink])
        committed_while_down = committed_offsets(s, s.sink_group, features)
        produced_while_down = sum(end_offsets(s, features).values())
        time.sleep(max(0.0, down_at + OUTAGE_S - time.monotonic()))

        assert worker.alive(), "the worker must not depend on the database\n" + worker.log_tail()
        assert sink.alive(), "the sink must wait for the database, not exit\n" + sink.log_tail()
        assert not stream.done(), "the outage must end mid-stream (the stream is too short)"
        assert _metric(metrics_port, "mimetic_sink_db_up") == 0.0
        retries = _metric(metrics_port, "mimetic_sink_db_retries_total") or 0.0
        assert retries >= 5, f"only {retries} retries in {OUTAGE_S:.0f} s"
        assert committed_offsets(s, s.sink_group, features) == committed_while_down, \
            "the sink committed offsets while the database was down"
        assert sum(end_offsets(s, features).values()) > produced_while_down, \
            "the worker stopped producing while the database was down"

        postgres.start(db)
        up_at = time.monotonic()
        stream.result(timeout=120)

    how = wait_for_rows(db, PREFIX, n, 120, stall_s=45)
    caught_up_s = time.monotonic() - up_at
    time.sleep(3)  # anything extra would show up now
    assert_exactly_expected(stored_envelopes(db, PREFIX), expected, how)
    assert_records_as_expected(stored_records(db, PREFIX), expected_rows, how)
    assert _metric(metrics_port, "mimetic_sink_db_up") == 1.0
    assert "database unavailable" in sink.log_text()
    assert worker.alive() and sink.alive()
    print(f"{before} of {n} rows stored before the outage; {retries:.0f} sink retries during it; "
          f"all rows {caught_up_s:.1f} s after the restart")

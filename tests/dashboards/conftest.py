"""Dashboards fixtures: a test database filled by a simulated clinic, without Kafka.

The simulator's device records go through the pure `DeviceProcessor` (the worker's
per-device logic) and its derived records through the sink's `DbWriter`, then the
per-session analysis runs: the same rows a full pipeline run writes, in seconds.
Session-scoped: built once, read by every dashboards test.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from ingest import wire
from ingest.runner import register_simulation
from ingest.simulator import Simulation
from mimetic.config import Settings
from processors import records as R
from processors.storage.writer import DbWriter
from processors.worker.device import DeviceProcessor, WorkerParams

from dashboards.macros import TimeRange


@dataclass
class Filled:
    settings: Settings
    sim: Simulation
    codes: list[str]
    clinic_id: str
    time_range: TimeRange


def fill(settings: Settings, sim: Simulation) -> None:
    register_simulation(sim, settings, kdf_n=2**10)
    params = WorkerParams.from_settings(settings)
    w = DbWriter(settings.db_dsn())
    try:
        for i, device in enumerate(sim.device_ids):
            dp = DeviceProcessor(device, params)
            out: list[R.Record] = []
            for rec in sim.device_records(i):
                if rec.kind == wire.KIND_FRAME:
                    recs, _late = dp.on_frame(rec.item, wire.encode_frame(rec.item))
                elif rec.kind == wire.KIND_TELEMETRY:
                    recs = dp.on_telemetry(rec.item)
                else:
                    recs = dp.on_event(rec.item)
                out += recs
                if len(out) >= 5000:
                    stats = dp.stream_stats(rec.item.t_us / 1e6)
                    out += [stats] if stats else []
                    w.write(out, pipeline={"component": "sink", "instance": "test", "lag": 0})
                    out = []
            stats = dp.stream_stats(0.0)
            out += [stats] if stats else []
            w.write(out, pipeline={"component": "sink", "instance": "test", "lag": 0})
        while w.refresh_sessions(settle_s=0) > 0:
            pass
    finally:
        w.close()


def add_assessments(settings: Settings, sim: Simulation) -> None:
    """Grades and PROs at the start of each patient's course (the simulator registered it) and on
    its last session day, so the research outcome panels have rows."""
    first = datetime.fromtimestamp(sim.plans[0][0].t0_us / 1e6, timezone.utc).date()
    last = first + timedelta(days=sim.n_sessions - 1)
    with psycopg.connect(settings.db_dsn(), autocommit=True) as conn:
        for p in sim.patients:
            pid = conn.execute("select patient_id from patient where code = %s", (p.code,)).fetchone()[0]
            better = p.responder
            for day, hb, sb, face, grc in ((first, 4, 40, 50, None),
                                           (last, 3 if better else 4, 55 if better else 42, 65 if better else 52,
                                            5 if better else 1)):
                conn.execute("insert into clinical_assessment (patient_id, assessed_on, assessor, hb_grade, "
                             "sunnybrook) values (%s, %s, 'test', %s, %s)", (pid, day, hb, sb))
                at = datetime.combine(day, datetime.min.time(), timezone.utc) + timedelta(hours=12)
                conn.execute("insert into patient_reported_outcome (patient_id, instrument, score, answered_at, "
                             "source) values (%s, 'face', %s, %s, 'clinic')", (pid, face, at))
                if grc is not None:
                    conn.execute("insert into patient_reported_outcome (patient_id, instrument, score, "
                                 "answered_at, source) values (%s, 'grc', %s, %s, 'clinic')", (pid, grc, at))


@pytest.fixture(scope="session")
def filled(settings: Settings) -> Filled:
    """3 patients x 4 sessions of 30 s, one day apart and ending about now, with device faults,
    in a database of their own (`<test database>_dashboards`), so other tests' rows never mix in."""
    from mimetic.db import fresh_database
    from mimetic.db.migrate import migrate

    settings = settings.model_copy(update={"pg_database": f"{settings.pg_database}_dashboards"})
    fresh_database(settings)
    migrate(settings.db_dsn())
    sessions, gap = 4, 86400.0
    start_us = int((datetime.now(timezone.utc).timestamp() - (sessions - 1) * gap - 600) * 1e6)
    sim = Simulation(patients=3, sessions=sessions, duration_s=30, seed=11, fault_prob=0.6, channels=8,
                     start_us=start_us, session_gap_s=gap, clinic_id="dash-clinic", device_prefix="dash")
    fill(settings, sim)
    add_assessments(settings, sim)
    with psycopg.connect(settings.db_dsn()) as conn:
        lo, hi = conn.execute("select min(time), max(time) from envelope").fetchone()
    return Filled(settings, sim, [p.code for p in sim.patients], sim.clinic_id,
                  TimeRange(lo - timedelta(hours=1), max(hi, datetime.now(timezone.utc)) + timedelta(minutes=1)))

"""The worker's live 1 s balance and %MVC agree with the session analysis (migration 0013's SQL)
over the same windows: a simulated session goes through `DeviceProcessor`, its records through
the sink's writer, the session analysis runs; then every live sliding window is recomputed in SQL
by the session analysis's definitions (`app.activity_level`, `app.pair_index`, the rest level over
the session's `rest` windows, the %MVC reference from its `mvc_calibration` task row)."""

from __future__ import annotations

import math
from datetime import timedelta

import psycopg
import pytest

from dashboards.definitions import clinic_live
from dashboards.macros import TimeRange, Variable, interpolate

from ingest import wire
from ingest.runner import register_simulation
from ingest.simulator import Simulation
from mimetic.config import Settings
from processors import records as R
from processors.measures.balance import affected_ratio
from processors.storage.writer import DbWriter
from processors.worker.device import DeviceProcessor, WorkerParams

pytestmark = pytest.mark.stack

#: per sample: the envelope sample of a channel of the device with its device time (as refresh_session)
SAMPLES = """
with cm as (select (x ->> 'channel')::int as ch, x ->> 'muscle' as muscle, x ->> 'side' as side
              from session_summary ss cross join lateral jsonb_array_elements(ss.channel_map) as x
             where ss.session_id = %(s)s),
smp as (select cm.muscle, cm.side, u.v::float8 as v, e.time + ((u.i - 1) / e.fs_hz) * interval '1 second' as t
          from envelope e
          cross join lateral generate_subscripts(e.env, 1) as c(ch)
          cross join lateral unnest(e.env[c.ch:c.ch][:]) with ordinality as u(v, i)
          join cm on cm.ch = c.ch - 1
         where e.device_id = %(d)s and e.time >= %(t0)s - interval '2 seconds' and e.time < %(t1)s),
rest as (select smp.muscle, smp.side, sqrt(avg(v * v)) as r from smp
           join task_window tw on tw.session_id = %(s)s and tw.task = 'rest' and smp.t >= tw.time
                              and smp.t < tw.time_end group by 1, 2)
"""

WINDOWS = SAMPLES + """,
win as (select * from unnest(%(starts)s::timestamptz[], %(ends)s::timestamptz[], %(muscles)s::text[])
                   as w(t0, t1, muscle)),
ms as (select win.t0, win.muscle, smp.side, avg(v * v) as p from win
         join smp on smp.muscle = win.muscle and smp.t >= win.t0 and smp.t < win.t1 group by 1, 2, 3),
lv as (select ms.t0, ms.muscle, ms.side, app.activity_level(ms.p, rest.r) as a, rest.r
         from ms join rest on rest.muscle = ms.muscle and rest.side = ms.side)
select l.t0, l.muscle, l.a, r.a, app.pair_index(l.a, r.a, l.r, r.r)
  from lv l join lv r on r.t0 = l.t0 and r.muscle = l.muscle and l.side = 'L' and r.side = 'R'
"""


@pytest.fixture(scope="module")
def live_db(settings: Settings) -> Settings:
    """A database of its own (`<test database>_live`), so no other test's rows mix in."""
    from mimetic.db import fresh_database
    from mimetic.db.migrate import migrate

    db = settings.model_copy(update={"pg_database": f"{settings.pg_database}_live"})
    fresh_database(db)
    migrate(db.db_dsn())
    return db


def live_and_session(db: Settings, seed: int) -> tuple[list[R.BalanceRecord], dict, dict, str]:
    sim = Simulation(patients=1, sessions=1, duration_s=40, seed=seed, fault_prob=0.0, channels=8,
                     therapy_types=("biofeedback_exercise",), device_prefix=f"live{seed}")
    register_simulation(sim, db, kdf_n=2**10)
    dp = DeviceProcessor(sim.device_ids[0], WorkerParams())
    out: list[R.Record] = []
    for rec in sim.device_records(0):
        if rec.kind == wire.KIND_FRAME:
            out += dp.on_frame(rec.item, wire.encode_frame(rec.item))[0]
        elif rec.kind == wire.KIND_TELEMETRY:
            out += dp.on_telemetry(rec.item)
        else:
            out += dp.on_event(rec.item)
    w = DbWriter(db.db_dsn())
    try:
        w.write(out, pipeline={"component": "sink", "instance": "test", "lag": 0})
        while w.refresh_sessions(settle_s=0) > 0:
            pass
    finally:
        w.close()
    live = [r for r in out if isinstance(r, R.BalanceRecord) and r.window_kind == "sliding"]
    sid = str(live[0].session_id)
    with psycopg.connect(db.db_dsn()) as conn:
        aff = conn.execute("select p.affected_side from session_summary ss join patient p using (patient_id) "
                           "where ss.session_id = %s", (sid,)).fetchone()[0]
        mvc = {m: (l, r) for m, l, r in conn.execute(
            "select muscle, left_value, right_value from balance where session_id = %s and window_kind = 'task' "
            "and task = 'mvc_calibration'", (sid,))}
        rest_end = conn.execute("select max(time_end) from task_window where session_id = %s and task = 'rest'",
                                (sid,)).fetchone()[0]
        live = [r for r in live if r.time >= rest_end]  # before: the live rest level is the quietest window's
        rows = conn.execute(WINDOWS, {"s": sid, "d": sim.device_ids[0], "t0": min(r.time for r in live),
                                      "t1": max(r.time_end for r in live), "starts": [r.time for r in live],
                                      "ends": [r.time_end for r in live], "muscles": [r.muscle for r in live]})
        sql = {(t0, m): (a_l, a_r, ai) for t0, m, a_l, a_r, ai in rows}
    return live, sql, mvc, aff


def panel_sql(title: str) -> str:
    (q,) = next(p for p in clinic_live().items if getattr(p, "title", None) == title).queries
    return q.sql


@pytest.mark.parametrize("seed", [3, 8])
def test_the_live_balance_and_pct_mvc_agree_with_the_session_analysis(live_db: Settings, seed: int) -> None:
    live, sql, mvc, aff = live_and_session(live_db, seed)
    assert len(live) >= 15 and aff in ("L", "R")
    calibrated = min(r.time for r in live if r.normalized)  # %MVC from the end of the calibration on
    assert all(r.normalized for r in live if r.time >= calibrated) and sum(r.normalized for r in live) >= 15
    worst_ai = worst_pct = 0.0
    for r in live:
        a_l, a_r, ai = sql[(r.time, r.muscle)]
        assert ai is not None, f"live AI {r.ai} where the session analysis has an inactive pair"
        worst_ai = max(worst_ai, abs(r.ai - ai))
        if not r.normalized:
            continue
        l_mvc, r_mvc = mvc[r.muscle]
        # the live reference is the stronger side's (the worker does not know the affected side):
        # the healthy one in these sessions
        healthy = r_mvc if aff == "L" else l_mvc
        assert healthy == max(l_mvc, r_mvc)
        worst_pct = max(worst_pct, abs(r.left - 100 * a_l / healthy), abs(r.right - 100 * a_r / healthy))
    print(f"seed {seed}: {len(live)} windows, |AI live - SQL| <= {worst_ai:.2e}, "
          f"|%MVC live - SQL| <= {worst_pct:.2e} %MVC")
    assert worst_ai < 1e-3 and worst_pct < 0.1
    # the live ratio, derived at read time from the patient's affected side (the live dashboard's
    # panel), is the measure's affected / healthy of the latest window's levels
    muscles = sorted({r.muscle for r in live})
    variables = {"session": Variable("session", str(live[0].session_id)),
                 "muscle": Variable("muscle", muscles, options=muscles, multi=True)}
    tr = TimeRange(live[0].time - timedelta(minutes=5), live[-1].time_end + timedelta(minutes=5))
    with psycopg.connect(live_db.db_dsn()) as conn:
        shown = dict(conn.execute(interpolate(panel_sql("Current affected / healthy ratio"), variables, tr)))
    latest = {r.muscle: r for r in live}
    assert set(shown) == set(muscles)
    for m, r in latest.items():
        want = float(affected_ratio(r.left, r.right, aff))
        assert (shown[m] is None) if math.isnan(want) else abs(float(shown[m]) - want) <= 0.005 + 1e-6 * want, m

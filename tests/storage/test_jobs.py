"""Rollup and retention jobs, and the envelope layout, on the real TimescaleDB."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from mimetic.config import Settings
from mimetic.db.migrate import migrate
from processors import records as r
from processors.storage.jobs import run_retention, run_rollup, timescale_info
from processors.storage.writer import DbWriter

from .helpers import envelope_frames, mixed_records

pytestmark = pytest.mark.stack


def test_migrations_are_applied_once(settings: Settings, db: psycopg.Connection) -> None:
    assert migrate(settings.db_dsn()) == []          # second run: nothing pending
    hypertables = {row[0] for row in db.execute("select hypertable_name from timescaledb_information.hypertables")}
    assert {"envelope", "signal_quality", "stream_stats", "balance", "activation", "alert_event",
            "envelope_1m", "telemetry"} <= hypertables
    info = timescale_info(db)
    assert info["version"].startswith("2.") and info["license"] in ("apache", "timescale")


def test_envelope_is_stored_as_channels_by_samples(settings: Settings, db: psycopg.Connection) -> None:
    device = f"dev-env-{uuid.uuid4().hex[:6]}"
    frames = envelope_frames(device, 3)
    w = DbWriter(settings.db_dsn())
    try:
        w.write(frames)
    finally:
        w.close()
    env, dims = db.execute("select env, array_dims(env) from envelope where device_id = %s and seq = 1",
                           (device,)).fetchone()
    assert dims == "[1:8][1:5]"
    assert env == frames[1].array.tolist()
    # per-channel view (channel 2 = third row)
    ch = db.execute("select env from envelope_channel where device_id = %s and seq = 1 and channel = 2",
                    (device,)).fetchone()[0]
    assert ch == frames[1].array[2].tolist()


def test_rollup_is_idempotent_and_incremental(settings: Settings, db: psycopg.Connection) -> None:
    device = f"dev-roll-{uuid.uuid4().hex[:6]}"
    t0 = datetime(2021, 5, 3, 8, 0, 50, tzinfo=timezone.utc)
    session = uuid.uuid4()
    recs = mixed_records(device, 1500, session, t0)      # 75 s: spans minutes 08:00, 08:01, 08:02
    w = DbWriter(settings.db_dsn())
    try:
        w.write(recs)
    finally:
        w.close()
    since, upto = datetime(2021, 5, 3, tzinfo=timezone.utc), datetime(2021, 5, 4, tzinfo=timezone.utc)
    first = run_rollup(settings, since=since, upto=upto)
    snap = db.execute("select bucket, channel, samples, mean_uv, max_uv from envelope_1m where device_id = %s "
                      "order by 1, 2", (device,)).fetchall()
    assert len(snap) == 3 * 8
    assert sum(row[2] for row in snap) == 1500 * 8 * 5
    # exact check against the raw rows
    want = db.execute(
        "select time_bucket('1 minute', time) b, c - 1, count(*), avg(v)::real, max(v) from envelope e, "
        "generate_subscripts(e.env, 1) c, unnest(e.env[c:c][:]) v where device_id = %s group by 1, 2 order by 1, 2",
        (device,)).fetchall()
    assert [(b, c, n, x) for b, c, n, _m, x in want] == [(b, c, n, x) for b, c, n, _m, x in snap]
    assert [m for *_x, m, _y in want] == pytest.approx([m for *_x, m, _y in snap], rel=1e-5)
    assert first["envelope_1m"]["changed"] >= 24
    sm = db.execute("select muscle, side, activations, task_windows from session_muscle_rollup "
                    "where session_id = %s order by 1, 2", (session,)).fetchall()
    assert sm == [("zygomaticus", "L", 75, 0)]   # sliding balance windows are not task windows
    # the same range again: same rows, nothing changed
    again = run_rollup(settings, since=since, upto=upto)
    assert again["envelope_1m"]["changed"] == 0 and again["session_muscle"]["changed"] == 0
    assert db.execute("select bucket, channel, samples, mean_uv, max_uv from envelope_1m where device_id = %s "
                      "order by 1, 2", (device,)).fetchall() == snap
    # watermark mode twice: the second run changes nothing
    run_rollup(settings)
    assert run_rollup(settings)["envelope_1m"]["changed"] == 0


def test_retention_drops_only_old_chunks(settings: Settings, db: psycopg.Connection) -> None:
    device = f"dev-ret-{uuid.uuid4().hex[:6]}"
    old = datetime(2020, 1, 10, tzinfo=timezone.utc)
    new = datetime(2020, 6, 1, tzinfo=timezone.utc)
    w = DbWriter(settings.db_dsn())
    try:
        w.write(envelope_frames(device, 10, t0=old) + envelope_frames(device, 10, t0=new, seq0=100)
                + [r.StreamStats(device_id=device, time=old, window_s=1.0)])
    finally:
        w.close()
    s = settings.model_copy(update={"retention_envelope_days": 90, "retention_detail_days": 0})
    out = run_retention(s, now=new + timedelta(days=1))
    assert out["envelope"]["dropped_chunks"], out
    assert out["stream_stats"] == {"kept": "forever"}
    times = db.execute("select min(time), max(time), count(*) from envelope where device_id = %s",
                       (device,)).fetchone()
    assert times[0] >= new and times[2] == 10
    assert db.execute("select count(*) from stream_stats where device_id = %s", (device,)).fetchone()[0] == 1

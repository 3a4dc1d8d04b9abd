"""TimescaleDB and migrations against the real local PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from mimetic.config import Settings
from mimetic.db.migrate import discover, migrate

pytestmark = pytest.mark.stack


def test_timescaledb_extension_is_created(db: psycopg.Connection) -> None:
    version = db.execute("select extversion from pg_extension where extname = 'timescaledb'").fetchone()
    assert version is not None and version[0].startswith("2.")
    hypertables = {r[0] for r in db.execute("select hypertable_name from timescaledb_information.hypertables")}
    assert "telemetry" in hypertables


def test_hypertable_write_and_time_bucket_read(db: psycopg.Connection) -> None:
    t0 = datetime(2026, 1, 5, 10, 0, tzinfo=timezone.utc)
    rows = [(t0 + timedelta(seconds=10 * i), "dev-tb-1", i, 100.0 - i, 30.0, [5.0, 6.0], 100.0, -60.0, [])
            for i in range(36)]  # 6 minutes, one row per 10 s
    with db.cursor().copy(
        "copy telemetry (time, device_id, seq, battery_pct, temperature_c, impedance_kohm, "
        "stim_current_ua, signal_strength_dbm, firmware_errors) from stdin"
    ) as copy:
        for r in rows:
            copy.write_row(r)
    got = db.execute(
        "select time_bucket('2 minutes', time) as b, count(*), avg(battery_pct)::float8 "
        "from telemetry where device_id = 'dev-tb-1' group by b order by b"
    ).fetchall()
    assert [c for _b, c, _a in got] == [12, 12, 12]
    assert [b for b, _c, _a in got] == [t0, t0 + timedelta(minutes=2), t0 + timedelta(minutes=4)]
    assert got[0][2] == pytest.approx(100 - 5.5)
    # rows landed in chunks of the hypertable, not the parent table
    chunks = db.execute("select count(*) from show_chunks('telemetry')").fetchone()[0]
    assert chunks >= 1


def _schema_snapshot(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute(
        """
        select c.relname, c.relkind, a.attname, format_type(a.atttypid, a.atttypmod)
        from pg_class c
        join pg_namespace n on n.oid = c.relnamespace
        left join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
        where n.nspname = 'public'
        order by 1, 3
        """
    ).fetchall()


def test_migrations_apply_twice_without_change(settings: Settings, db: psycopg.Connection) -> None:
    before = _schema_snapshot(db)
    ledger = db.execute("select version, checksum, applied_at from schema_migration order by version").fetchall()
    assert [v for v, *_ in ledger] == [m.version for m in discover()]
    assert migrate(settings.db_dsn()) == []  # nothing pending: the fixture already migrated
    assert migrate(settings.db_dsn()) == []
    assert _schema_snapshot(db) == before
    assert db.execute("select version, checksum, applied_at from schema_migration order by version").fetchall() == ledger

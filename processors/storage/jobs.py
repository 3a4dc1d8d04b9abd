"""The project's own scheduled jobs: rollups (time_bucket) and retention (drop_chunks).

TimescaleDB's continuous aggregates, retention policies and job scheduler
(`add_job`) are not in the Apache-licensed edition that Debian ships, so both jobs
are plain SQL run from here (`mimetic jobs rollup`, `mimetic jobs retention`;
schedule them with cron/systemd timers or a Kubernetes CronJob, e.g. rollup every
minute and retention daily). :func:`timescale_info` reports the edition; where a
full (Timescale-licensed) build is present the same jobs still work, and
`add_retention_policy` / continuous aggregates could replace them.

Rollup: ``app.rollup_envelope_1m`` and ``app.rollup_session_muscle`` (migration 0003)
recompute whole buckets / sessions of a time range and upsert, so running a range
twice leaves the same rows. The watermark in ``app.rollup_state`` makes runs
incremental: each run covers [watermark - lookback, now - lateness), the lookback
absorbing data that arrived late. Older late data: ``run_rollup(since=...)``.

Retention: ``drop_chunks(table, older_than => now - N days)`` drops only chunks whose
whole time range is older, per table with its own age (settings
``retention_*_days``; 0 keeps forever; pipeline_stats follows the detail age). Summaries, balance, activations, alerts and
rollups are kept: they are small and are the clinical record.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import psycopg

from mimetic.config import Settings

_ROLLUP_LOCK = 0x6D696D66   # advisory lock keys: one rollup / retention run at a time
_RETENTION_LOCK = 0x6D696D67

ROLLUPS: tuple[tuple[str, str, str], ...] = (
    # (name, function, source table.time column for the first run)
    ("envelope_1m", "app.rollup_envelope_1m", "select min(time) from envelope"),
    ("session_muscle", "app.rollup_session_muscle",
     "select least((select min(onset) from activation), (select min(time) from balance))"),
)

RETENTION: tuple[tuple[str, str], ...] = (
    ("envelope", "retention_envelope_days"),
    ("signal_quality", "retention_detail_days"),
    ("stream_stats", "retention_detail_days"),
    ("telemetry", "retention_telemetry_days"),
    ("pipeline_stats", "retention_detail_days"),
)


def timescale_info(conn: psycopg.Connection) -> dict:
    version = conn.execute("select extversion from pg_extension where extname = 'timescaledb'").fetchone()
    license = conn.execute("select current_setting('timescaledb.license', true)").fetchone()[0]
    return {
        "version": version[0] if version else None,
        "license": license,
        "full_edition": license == "timescale",
        "note": ("Timescale-licensed build: continuous aggregates and policies are available, the project "
                 "still runs its own jobs" if license == "timescale" else
                 "Apache edition: no continuous aggregates/policies/add_job; the project's own jobs run"),
    }


def run_rollup(s: Settings, since: datetime | None = None, upto: datetime | None = None,
               dsn: str | None = None) -> dict:
    """Roll up; with `since` the watermark is ignored for the start (re-roll a range)."""
    out: dict = {}
    with psycopg.connect(dsn or s.db_dsn(), autocommit=True) as conn:
        conn.execute("select pg_advisory_lock(%s)", (_ROLLUP_LOCK,))
        try:
            # finished sessions whose data changed: task-window balance, muscle summary, synkinesis
            out["sessions_refreshed"] = conn.execute(
                "select app.refresh_dirty_sessions(interval '0 seconds', 100000)").fetchone()[0]
            now = conn.execute("select now()").fetchone()[0]
            end = upto or (now - timedelta(seconds=s.rollup_lateness_s))
            end = conn.execute("select time_bucket('1 minute', %s::timestamptz)", (end,)).fetchone()[0]
            for name, fn, first_sql in ROLLUPS:
                row = conn.execute("select watermark from app.rollup_state where name = %s", (name,)).fetchone()
                watermark = row[0] if row else None
                if since is not None:
                    start = since
                elif watermark is not None:
                    start = watermark - timedelta(seconds=s.rollup_lookback_s)
                else:
                    start = conn.execute(first_sql).fetchone()[0]
                if start is None or start >= end:
                    out[name] = {"from": start, "to": end, "changed": 0}
                    continue
                with conn.transaction():
                    changed = conn.execute(f"select {fn}(%s, %s)", (start, end)).fetchone()[0]
                    conn.execute(
                        "insert into app.rollup_state (name, watermark) values (%s, %s) "
                        "on conflict (name) do update set watermark = greatest(app.rollup_state.watermark, "
                        "excluded.watermark), updated_at = now()",
                        (name, end),
                    )
                out[name] = {"from": start, "to": end, "changed": changed}
        finally:
            conn.execute("select pg_advisory_unlock(%s)", (_ROLLUP_LOCK,))
    return out


def run_retention(s: Settings, now: datetime | None = None, dsn: str | None = None,
                  tables: tuple[tuple[str, str], ...] = RETENTION) -> dict:
    """Drop chunks older than each table's configured age; returns what was dropped."""
    now = now or datetime.now(timezone.utc)
    out: dict = {}
    with psycopg.connect(dsn or s.db_dsn(), autocommit=True) as conn:
        out["timescaledb"] = timescale_info(conn)
        conn.execute("select pg_advisory_lock(%s)", (_RETENTION_LOCK,))
        try:
            for table, field in tables:
                days = getattr(s, field)
                if days <= 0:
                    out[table] = {"kept": "forever"}
                    continue
                older_than = now - timedelta(days=days)
                dropped = [r[0] for r in conn.execute(
                    "select drop_chunks(%s::regclass, older_than => %s::timestamptz)", (table, older_than))]
                out[table] = {"older_than": older_than, "dropped_chunks": dropped}
        finally:
            conn.execute("select pg_advisory_unlock(%s)", (_RETENTION_LOCK,))
    return out

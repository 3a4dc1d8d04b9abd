"""Idempotent batch writes of derived records into TimescaleDB (the sink's database side).

One call of :meth:`DbWriter.write` = ONE transaction: every kind in the batch is
binary-COPYed into a temporary staging table (``ON COMMIT DELETE ROWS``) and moved
into its table with ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` on the natural
key, so a replayed batch inserts nothing. Alert state and session summaries are
upserts whose rules make a replay a no-op (see each method).

Errors are sorted for the caller: :class:`TransientDbError` (connection lost, server
shutting down, serialization failure, deadlock, missing table or privilege: retry the
same batch later) and :class:`RecordRejected` (the data itself cannot be stored:
isolate the bad record and dead-letter it). A rejection is either the database's
(SQLSTATE class 22 data exception, 23 integrity constraint violation, 54 program limit
exceeded, e.g. an index row too large) or :class:`RowEncodingError`, raised before the
row reaches the database (a value out of its column type's range, such as a ``seq``
of 2**63). Nothing else escapes :meth:`DbWriter.write`.
"""

from __future__ import annotations

import functools
import logging
import struct
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import psycopg
from psycopg import errors as pg_errors

from processors import records as r
from processors.pro_events import insert_pros
from processors.storage import pgbinary

log = logging.getLogger(__name__)


class TransientDbError(RuntimeError):
    """The database cannot take the batch now; retry the same batch later."""


class RecordRejected(RuntimeError):
    """The batch contains data the database refuses (constraint, bad value)."""


class RowEncodingError(RecordRejected):
    """A record has a value its column type cannot hold; it never reached the database."""


#: what encoding a row's values can raise (our binary encoder or psycopg's dumpers)
_ENCODE_ERRORS = (pgbinary.EncodeError, struct.error, OverflowError, TypeError, ValueError, UnicodeError)
#: SQLSTATE classes that are the row's fault, never an outage
_DATA_SQLSTATE_CLASSES = ("22", "23", "54")


@dataclass
class WriteResult:
    staged: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    inserted: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, table: str, staged: int, inserted: int) -> None:
        self.staged[table] += staged
        self.inserted[table] += inserted


# --- row specs of the COPY-able kinds -------------------------------------------------
# (table, [(column, copy type)], row builder)

def _quality_row(q: r.QualityRecord) -> tuple:
    return (q.time, q.device_id, q.channel, q.session_id, q.window_s, q.muscle, q.side, q.rms_uv,
            q.baseline_uv, q.snr_db, q.mains_ratio, q.clipping_frac, q.flatline_frac,
            q.stim_artifact_frac, q.contact_ok, q.score)


def _stats_row(x: r.StreamStats) -> tuple:
    return (x.time, x.device_id, x.session_id, x.window_s, x.frames, x.samples, x.gaps, x.missing_frames,
            x.duplicates, x.late, x.dead_lettered, x.last_seq, x.restarts, x.clock_refused)


def _telemetry_row(t: r.TelemetryRecord) -> tuple:
    return (t.time, t.device_id, t.seq, t.battery_pct, t.temperature_c, t.impedance_kohm,
            t.stim_current_ua, t.signal_strength_dbm, t.firmware_errors)


def _balance_row(b: r.BalanceRecord) -> tuple:
    return (b.time, b.time_end, b.device_id, b.session_id, b.window_kind, b.muscle, b.task, b.repetition,
            b.left, b.right, b.ai, b.ratio, b.affected_side, b.normalized)


def _activation_row(a: r.ActivationRecord) -> tuple:
    return (a.onset, a.offset, a.device_id, a.session_id, a.channel, a.muscle, a.side, a.peak_uv,
            a.peak_time, a.mean_uv, a.area_uv_s, a.peak_pct_mvc, a.task, a.repetition, a.onset_latency_s,
            a.target, a.median_freq_slope_hz_s, a.median_freq_hz, a.mean_freq_hz, a.mean_freq_slope_hz_s)


def _alert_row(a: r.AlertRecord) -> tuple:
    return (a.time, a.alert_id, a.device_id, a.session_id, a.alert_type, a.severity, a.state, a.raised_at,
            a.channel, a.value, a.threshold, a.message)


def _task_window_row(w: r.TaskWindowRecord) -> tuple:
    return (w.session_id, w.device_id, w.task, w.repetition, w.time, w.time_end)


@dataclass(frozen=True)
class CopySpec:
    table: str
    columns: tuple[tuple[str, str], ...]
    row: object
    conflict: str     # natural key columns

    @property
    def staging(self) -> str:
        return f"stg_{self.table}"

    @property
    def column_list(self) -> str:
        return ", ".join(c for c, _ in self.columns)

    @property
    def types(self) -> list[str]:
        # char(1) columns travel as text (psycopg has no binary bpchar dumper); see _connect
        return ["text" if t == "char1" else t for _, t in self.columns]

    @property
    def char_columns(self) -> list[str]:
        return [c for c, t in self.columns if t == "char1"]

    def check(self, row: tuple) -> None:
        """Raise pgbinary.EncodeError for a value its column's type cannot hold."""
        for i, name, check in _checkers(self):
            try:
                check(row[i])
            except pgbinary.EncodeError as exc:
                raise pgbinary.EncodeError(f"{name}: {exc}") from None


@functools.cache
def _checkers(spec: CopySpec) -> tuple[tuple[int, str, Callable], ...]:
    out = []
    for i, (name, copy_type) in enumerate(spec.columns):
        check = pgbinary.value_checker(copy_type)
        if check is not None:
            out.append((i, name, check))
    return tuple(out)


COPY_SPECS: dict[str, CopySpec] = {
    "quality": CopySpec("signal_quality", (
        ("time", "timestamptz"), ("device_id", "text"), ("channel", "int2"), ("session_id", "uuid"),
        ("window_s", "float4"), ("muscle", "text"), ("side", "char1"), ("rms_uv", "float4"),
        ("baseline_uv", "float4"), ("snr_db", "float4"), ("mains_ratio", "float4"),
        ("clipping_frac", "float4"), ("flatline_frac", "float4"), ("stim_artifact_frac", "float4"),
        ("contact_ok", "bool"), ("score", "float4")), _quality_row, "device_id, channel, time"),
    "stream_stats": CopySpec("stream_stats", (
        ("time", "timestamptz"), ("device_id", "text"), ("session_id", "uuid"), ("window_s", "float4"),
        ("frames", "int4"), ("samples", "int8"), ("gaps", "int4"), ("missing_frames", "int4"),
        ("duplicates", "int4"), ("late", "int4"), ("dead_lettered", "int4"), ("last_seq", "int8"),
        ("restarts", "int4"), ("clock_refused", "int4")),
        _stats_row, "device_id, time"),
    "telemetry": CopySpec("telemetry", (
        ("time", "timestamptz"), ("device_id", "text"), ("seq", "int8"), ("battery_pct", "float4"),
        ("temperature_c", "float4"), ("impedance_kohm", "float4[]"), ("stim_current_ua", "float4"),
        ("signal_strength_dbm", "float4"), ("firmware_errors", "text[]")), _telemetry_row,
        "device_id, time, seq"),
    "balance": CopySpec("balance", (
        ("time", "timestamptz"), ("time_end", "timestamptz"), ("device_id", "text"), ("session_id", "uuid"),
        ("window_kind", "text"), ("muscle", "text"), ("task", "text"), ("repetition", "int4"),
        ("left_value", "float4"), ("right_value", "float4"), ("ai", "float4"), ("ratio", "float4"),
        ("affected_side", "char1"), ("normalized", "bool")), _balance_row,
        "device_id, muscle, window_kind, time"),
    "activation": CopySpec("activation", (
        ("onset", "timestamptz"), ("offset_at", "timestamptz"), ("device_id", "text"), ("session_id", "uuid"),
        ("channel", "int2"), ("muscle", "text"), ("side", "char1"), ("peak_uv", "float4"),
        ("peak_time", "timestamptz"), ("mean_uv", "float4"), ("area_uv_s", "float4"),
        ("peak_pct_mvc", "float4"), ("task", "text"), ("repetition", "int4"), ("onset_latency_s", "float4"),
        ("target", "bool"), ("median_freq_slope_hz_s", "float4"), ("median_freq_hz", "float4"),
        ("mean_freq_hz", "float4"), ("mean_freq_slope_hz_s", "float4")), _activation_row,
        "device_id, channel, onset"),
    "alert": CopySpec("alert_event", (
        ("time", "timestamptz"), ("alert_id", "text"), ("device_id", "text"), ("session_id", "uuid"),
        ("alert_type", "text"), ("severity", "text"), ("state", "text"), ("raised_at", "timestamptz"),
        ("channel", "int2"), ("value", "float4"), ("threshold", "float4"), ("message", "text")),
        _alert_row, "alert_id, state, time"),
    "task_window": CopySpec("task_window", (
        ("session_id", "uuid"), ("device_id", "text"), ("task", "text"), ("repetition", "int4"),
        ("time", "timestamptz"), ("time_end", "timestamptz")), _task_window_row, "session_id, task, repetition"),
}
#: every kind the writer stores
SUPPORTED_KINDS = frozenset({"envelope", "session_summary", "pro", *COPY_SPECS})
ENVELOPE_TABLE = "envelope"
SUMMARY_TABLE = "session_summary"


def _classify(exc: BaseException) -> Exception:
    """Map a psycopg error to TransientDbError or RecordRejected."""
    text = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    sqlstate = getattr(exc, "sqlstate", None) or ""
    if isinstance(exc, (pg_errors.DataError, pg_errors.IntegrityError)) or \
            sqlstate[:2] in _DATA_SQLSTATE_CLASSES:
        return RecordRejected(text)
    return TransientDbError(text)


def _encoding_error(kind: str, rec: r.Record, exc: BaseException) -> RowEncodingError:
    return RowEncodingError(f"{kind} {_short_key(rec)}: {type(exc).__name__}: {exc}"[:500])


def _short_key(rec: r.Record) -> str:
    try:
        return repr(rec.natural_key())[:200]
    except Exception:  # the key of a broken record is only for the message
        return "(no key)"


class DbWriter:
    """A connection that writes batches of records; reconnects after failures."""

    def __init__(self, dsn: str, connect_timeout: float = 5.0):
        self.dsn = dsn
        self.connect_timeout = connect_timeout
        self.conn: psycopg.Connection | None = None

    # -- connection --------------------------------------------------------------
    def _connect(self) -> psycopg.Connection:
        if self.conn is not None and not self.conn.closed and not self.conn.broken:
            return self.conn
        self.close()
        conn = psycopg.connect(self.dsn, connect_timeout=self.connect_timeout, autocommit=True,
                               application_name="mimetic-sink")
        conn.execute("set statement_timeout = '120s'")
        conn.execute(f"create temp table stg_{ENVELOPE_TABLE} (like {ENVELOPE_TABLE}) on commit delete rows")
        for spec in COPY_SPECS.values():
            conn.execute(f"create temp table {spec.staging} (like {spec.table}) on commit delete rows")
            for col in spec.char_columns:
                conn.execute(f"alter table {spec.staging} alter column {col} type text")
        conn.autocommit = False
        self.conn = conn
        return conn

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # pragma: no cover - closing a broken connection
                pass
            self.conn = None

    def ping(self) -> bool:
        try:
            conn = self._connect()
            conn.execute("select 1")
            conn.rollback()
            return True
        except Exception:
            self.close()
            return False

    # -- writing ------------------------------------------------------------------
    def write(self, batch: Sequence[r.Record], pipeline: dict | None = None) -> WriteResult:
        """Write all records in one transaction. Raises TransientDbError / RecordRejected.

        `pipeline`: optional {component, instance, records, dead_letters, lag} written as one
        `pipeline_stats` row in the same transaction (operator dashboards); `rows_written` and
        `duplicates` in it replace this write's own counts (the parts of a bisected batch).
        """
        by_kind: dict[str, list] = defaultdict(list)
        for rec in batch:
            by_kind[r.kind_of(rec)].append(rec)
        unknown = set(by_kind) - SUPPORTED_KINDS
        if unknown:
            raise RowEncodingError(f"no table for record kind(s) {sorted(unknown)}")
        t_start = time.perf_counter()
        try:
            conn = self._connect()
            result = WriteResult()
            with conn.transaction():
                with conn.cursor() as cur:
                    if by_kind.get("envelope"):
                        self._write_envelopes(cur, by_kind["envelope"], result)
                    for kind, spec in COPY_SPECS.items():
                        if by_kind.get(kind):
                            self._copy(cur, spec, by_kind[kind], result)
                    if by_kind.get("alert"):
                        self._upsert_alert_state(cur)
                    self._mark_dirty(cur, by_kind)
                    for summary in by_kind.get("session_summary", ()):
                        try:
                            self._upsert_summary(cur, summary, result)
                        except _ENCODE_ERRORS as exc:   # a parameter psycopg cannot adapt
                            raise _encoding_error(SUMMARY_TABLE, summary, exc) from None
                    if by_kind.get("pro"):   # after the summaries: the session's patient is known
                        inserted, _orphans = insert_pros(cur, by_kind["pro"])
                        result.add("patient_reported_outcome", len(by_kind["pro"]), inserted)
                    if pipeline is not None:
                        rows = pipeline.get("rows_written", sum(result.inserted.values()))
                        duplicates = pipeline.get("duplicates", sum(result.staged.values()) - rows)
                        cur.execute(
                            "insert into pipeline_stats (component, instance, records, rows_written, duplicates,"
                            " dead_letters, lag, write_ms) values (%s, %s, %s, %s, %s, %s, %s, %s)",
                            (pipeline.get("component", "sink"), pipeline.get("instance", ""),
                             pipeline.get("records", len(batch)), rows, duplicates,
                             pipeline.get("dead_letters", 0), pipeline.get("lag"),
                             (time.perf_counter() - t_start) * 1000))
            return result
        except TransientDbError:
            raise
        except RecordRejected:
            self._rollback()
            raise
        except psycopg.Error as exc:
            err = _classify(exc)
            if isinstance(err, TransientDbError):
                self.close()
            else:
                self._rollback()
            raise err from exc

    def _rollback(self) -> None:
        """Leave the connection idle after a rejected batch (or drop it if that fails)."""
        try:
            if self.conn is not None and not self.conn.closed:
                self.conn.rollback()
        except psycopg.Error:
            self.close()

    def _write_envelopes(self, cur: psycopg.Cursor, frames: Iterable[r.EnvelopeFrame], result: WriteResult) -> None:
        cols = ", ".join(pgbinary.ENVELOPE_COLUMNS)
        n = 0
        with cur.copy(f"copy stg_{ENVELOPE_TABLE} ({cols}) from stdin (format binary)") as copy:
            parts = [pgbinary.SIGNATURE]
            for f in frames:
                try:
                    parts.append(pgbinary.envelope_row(f.time, f.device_id, f.seq, f.session_id, f.fs_hz,
                                                       f.array, f.clipped, f.stim_blanked))
                except _ENCODE_ERRORS as exc:
                    raise _encoding_error("envelope", f, exc) from None
                n += 1
                if len(parts) >= 2000:
                    copy.write(b"".join(parts))
                    parts = []
            parts.append(pgbinary.TRAILER)
            copy.write(b"".join(parts))
        cur.execute(f"insert into {ENVELOPE_TABLE} ({cols}) select {cols} from stg_{ENVELOPE_TABLE} "
                    f"on conflict (device_id, time, seq) do nothing")
        result.add(ENVELOPE_TABLE, n, cur.rowcount)

    def _copy(self, cur: psycopg.Cursor, spec: CopySpec, recs: list, result: WriteResult) -> None:
        with cur.copy(f"copy {spec.staging} ({spec.column_list}) from stdin (format binary)") as copy:
            copy.set_types(spec.types)
            for rec in recs:
                try:
                    row = spec.row(rec)
                    spec.check(row)
                    copy.write_row(row)
                except _ENCODE_ERRORS as exc:
                    raise _encoding_error(spec.table, rec, exc) from None
        cur.execute(f"insert into {spec.table} ({spec.column_list}) select {spec.column_list} "
                    f"from {spec.staging} on conflict ({spec.conflict}) do nothing")
        result.add(spec.table, len(recs), cur.rowcount)

    def _mark_dirty(self, cur: psycopg.Cursor, by_kind: dict[str, list]) -> None:
        """Sessions whose in-database analysis (app.refresh_session) must be recomputed."""
        sessions = {f.session_id for f in by_kind.get("envelope", ()) if f.session_id is not None}
        sessions.update(w.session_id for w in by_kind.get("task_window", ()))
        sessions.update(s.session_id for s in by_kind.get("session_summary", ()) if s.status != "open")
        if sessions:
            cur.execute(
                "insert into app.session_dirty (session_id) select unnest(%s::uuid[]) "
                "on conflict (session_id) do update set marked_at = excluded.marked_at",
                (sorted(sessions),))

    def refresh_sessions(self, settle_s: float = 2.0, limit: int = 50) -> int:
        """Recompute finished sessions marked dirty (see migration 0006); returns how many."""
        try:
            conn = self._connect()   # inside: a database gone while connecting is transient too
            with conn.transaction():
                n = conn.execute("select app.refresh_dirty_sessions(make_interval(secs => %s), %s)",
                                 (settle_s, limit)).fetchone()[0]
            return n
        except psycopg.Error as exc:
            self.close()
            raise _classify(exc) from exc

    def _upsert_alert_state(self, cur: psycopg.Cursor) -> None:
        # one row per episode: the raise's description, cleared_at once any clear was seen.
        # A replayed raise never un-clears an episode (coalesce keeps the clear).
        cur.execute(
            """
            insert into alert as a (alert_id, device_id, session_id, alert_type, severity, channel,
                                    raised_at, cleared_at, value, threshold, message)
            select distinct on (alert_id) alert_id, device_id, session_id, alert_type, severity, channel,
                   raised_at,
                   max(time) filter (where state = 'cleared') over (partition by alert_id),
                   value, threshold, message
            from stg_alert_event
            order by alert_id, (state = 'cleared'), time
            on conflict (alert_id) do update
                set cleared_at = coalesce(excluded.cleared_at, a.cleared_at),
                    severity = case when a.cleared_at is null and excluded.cleared_at is null
                                    then excluded.severity else a.severity end
            """
        )

    def _upsert_summary(self, cur: psycopg.Cursor, s: r.SessionSummary, result: WriteResult) -> None:
        """Newer (revision, computed_at) wins; an equal one is a replay and changes nothing."""
        cur.execute(
            """
            insert into session_summary as t (session_id, device_id, patient_id, therapy_type, started_at,
                ended_at, status, minutes, active_minutes, discomfort, skin_reaction, max_stim_current_ua,
                frames, missing_frames, duplicates, alerts, tasks, revision, computed_at, channel_map)
            values (%(session_id)s, %(device_id)s,
                    coalesce(app.device_patient_at(%(device_id)s, %(started_at)s), %(patient_id)s,
                             (select patient_id from therapy_session where session_id = %(session_id)s),
                             (select patient_id from device where device_id = %(device_id)s)),
                    %(therapy_type)s, %(started_at)s, %(ended_at)s, %(status)s, %(minutes)s,
                    %(active_minutes)s, %(discomfort)s, %(skin_reaction)s, %(max_stim_current_ua)s,
                    %(frames)s, %(missing_frames)s, %(duplicates)s, %(alerts)s, %(tasks)s::jsonb,
                    %(revision)s, %(computed_at)s, %(channel_map)s)
            on conflict (session_id) do update set
                device_id = excluded.device_id, patient_id = excluded.patient_id,
                therapy_type = excluded.therapy_type, started_at = excluded.started_at,
                ended_at = excluded.ended_at, status = excluded.status, minutes = excluded.minutes,
                active_minutes = coalesce(excluded.active_minutes, t.active_minutes),
                discomfort = excluded.discomfort,
                skin_reaction = excluded.skin_reaction, max_stim_current_ua = excluded.max_stim_current_ua,
                frames = excluded.frames, missing_frames = excluded.missing_frames,
                duplicates = excluded.duplicates, alerts = excluded.alerts, tasks = excluded.tasks,
                revision = excluded.revision, computed_at = excluded.computed_at, stored_at = now(),
                channel_map = coalesce(excluded.channel_map, t.channel_map)
            where (excluded.revision, excluded.computed_at) > (t.revision, t.computed_at)
            returning patient_id
            """,
            {
                "session_id": s.session_id, "device_id": s.device_id, "patient_id": s.patient_id,
                "therapy_type": s.therapy_type, "started_at": s.started_at, "ended_at": s.ended_at,
                "status": s.status, "minutes": s.minutes, "active_minutes": s.active_minutes,
                "discomfort": s.discomfort, "skin_reaction": s.skin_reaction,
                "max_stim_current_ua": s.max_stim_current_ua, "frames": s.frames,
                "missing_frames": s.missing_frames, "duplicates": s.duplicates, "alerts": s.alerts,
                "tasks": psycopg.types.json.Jsonb(s.tasks), "revision": s.revision,
                "computed_at": s.computed_at,
                "channel_map": psycopg.types.json.Jsonb(s.channel_map) if s.channel_map else None,
            },
        )
        row = cur.fetchone()
        result.add(SUMMARY_TABLE, 1, 0 if row is None else 1)
        if row is None:
            return  # replay or older revision
        if s.muscles:   # else keep what the database computed (app.refresh_session)
            cur.execute("delete from session_muscle_summary where session_id = %s", (s.session_id,))
            cur.executemany(
                "insert into session_muscle_summary (session_id, muscle, ai, ratio, left_pct_mvc, right_pct_mvc,"
                " synkinesis, synkinesis_flag, activations, task_windows) values (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                [(s.session_id, m.muscle, m.ai, m.ratio, m.left_pct_mvc, m.right_pct_mvc, m.synkinesis,
                  m.synkinesis_flag, m.activations, m.task_windows) for m in s.muscles],
            )
            result.add("session_muscle_summary", len(s.muscles), len(s.muscles))
        # keep the registry's session row in step (only when the device is registered)
        cur.execute(
            """
            insert into therapy_session as ts (session_id, patient_id, device_id, therapy_type, started_at,
                                               ended_at, status, discomfort, skin_reaction, channel_map)
            select %(session_id)s, %(patient_id)s, d.device_id, %(therapy_type)s, %(started_at)s,
                   %(ended_at)s, %(status)s, %(discomfort)s, %(skin_reaction)s, %(channel_map)s::jsonb
            from device d where d.device_id = %(device_id)s
            on conflict (session_id) do update set
                ended_at = coalesce(excluded.ended_at, ts.ended_at), status = excluded.status,
                patient_id = coalesce(ts.patient_id, excluded.patient_id),
                discomfort = coalesce(excluded.discomfort, ts.discomfort),
                skin_reaction = coalesce(excluded.skin_reaction, ts.skin_reaction),
                channel_map = coalesce(ts.channel_map, excluded.channel_map)
            """,
            {"session_id": s.session_id, "patient_id": row[0], "device_id": s.device_id,
             "therapy_type": s.therapy_type, "started_at": s.started_at, "ended_at": s.ended_at,
             "status": s.status, "discomfort": s.discomfort, "skin_reaction": s.skin_reaction,
             "channel_map": psycopg.types.json.Jsonb(s.channel_map) if s.channel_map else None},
        )

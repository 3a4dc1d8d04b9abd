"""`mimetic query`: export a de-identified cohort to CSV or Parquet through the researcher role.

Only the `research` schema is read (the researcher login cannot read anything else),
so an export can hold no name, patient code, database id, device id or calendar date.
A cohort is chosen by patient attributes (etiology, site, baseline House-Brackmann
grade, research ids) and session attributes (therapy type); the time range is relative,
as in the research views: days since the patient's first session (`--from-day`,
`--to-day`) and session numbers (`--sessions 1-10`).

Datasets (one table each):
  patients       research.patient + responder status
  sessions       research.session
  session_muscle research.session_muscle (AI, ratio, %MVC, synkinesis per session and muscle)
  balance        research.balance (sliding, task and repetition windows)
  activations    research.activation
  envelopes      research.envelope, long format: one row per session, channel and sample
                 (t_s = seconds since the session start)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

DATASETS = ("patients", "sessions", "session_muscle", "balance", "activations", "envelopes")


@dataclass
class Cohort:
    etiology: list[str] = field(default_factory=list)
    therapy: list[str] = field(default_factory=list)
    site: list[str] = field(default_factory=list)
    baseline_hb: list[int] = field(default_factory=list)
    research_id: list[str] = field(default_factory=list)
    from_day: int | None = None
    to_day: int | None = None
    first_session: int | None = None
    last_session: int | None = None

    def sessions_sql(self) -> tuple[sql.Composed, list]:
        """Research session ids of the cohort and range."""
        where, params = [sql.SQL("true")], []
        for col, values in (("p.etiology", self.etiology), ("s.therapy_type", self.therapy),
                            ("p.site_id", self.site), ("p.baseline_hb_grade", self.baseline_hb),
                            ("p.research_id", self.research_id)):
            if values:
                where.append(sql.SQL(col + " = any(%s)"))
                params.append(list(values))
        for col, op, v in (("s.day_since_first_session", ">=", self.from_day),
                           ("s.day_since_first_session", "<=", self.to_day),
                           ("s.session_number", ">=", self.first_session),
                           ("s.session_number", "<=", self.last_session)):
            if v is not None:
                where.append(sql.SQL(f"{col} {op} %s"))
                params.append(v)
        q = sql.SQL("select s.research_session_id from research.session s join research.patient p "
                    "using (research_id) where ") + sql.SQL(" and ").join(where)
        return q, params


def dataset_sql(name: str, cohort: Cohort) -> tuple[sql.Composed, list]:
    sess, params = cohort.sessions_sql()
    if name == "patients":
        q = sql.SQL("select p.*, r.therapy_type as main_therapy, r.first_abs_ai, r.last_abs_ai, r.abs_ai_improvement, "
                    "r.responder from research.patient p left join research.responder r using (research_id) "
                    "where p.research_id in (select s2.research_id from research.session s2 "
                    "where s2.research_session_id in ({})) order by p.research_id").format(sess)
    elif name == "sessions":
        q = sql.SQL("select * from research.session where research_session_id in ({}) "
                    "order by research_id, session_number").format(sess)
    elif name == "session_muscle":
        q = sql.SQL("select * from research.session_muscle where research_session_id in ({}) "
                    "order by research_id, session_number, muscle").format(sess)
    elif name == "balance":
        q = sql.SQL("select * from research.balance where research_session_id in ({}) "
                    "order by research_session_id, t_s, muscle, window_kind").format(sess)
    elif name == "activations":
        q = sql.SQL("select * from research.activation where research_session_id in ({}) "
                    "order by research_session_id, onset_s, muscle, side").format(sess)
    elif name == "envelopes":
        q = sql.SQL("select e.research_session_id, e.research_id, e.t_s + (u.s - 1) / e.fs_hz as t_s, "
                    "e.channels[c.ch] as channel, e.env[c.ch][u.s] as envelope_uv "
                    "from research.envelope e cross join lateral generate_subscripts(e.env, 1) as c(ch) "
                    "cross join lateral generate_subscripts(e.env, 2) as u(s) "
                    "where e.research_session_id in ({}) order by 1, 4, 3").format(sess)
    else:
        raise ValueError(f"dataset must be one of {', '.join(DATASETS)}")
    return q, params


def export(dsn: str, dataset: str, cohort: Cohort, out: Path, fmt: str | None = None,
           batch_rows: int = 50_000) -> int:
    """Stream the dataset to CSV or Parquet (by `fmt` or the file suffix); returns the row count."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    out = Path(out)
    fmt = (fmt or out.suffix.lstrip(".")).lower()
    if fmt not in ("csv", "parquet"):
        raise ValueError("format must be csv or parquet")
    q, params = dataset_sql(dataset, cohort)
    out.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    writer = None
    with psycopg.connect(dsn) as conn, conn.cursor(name="mimetic_export") as cur:
        conn.execute("set transaction read only")
        cur.itersize = batch_rows
        cur.execute(q, params)
        names: list[str] | None = None
        schema = None
        while True:
            rows = cur.fetchmany(batch_rows)
            if names is None:
                names = [c.name for c in cur.description]
                schema = pa.schema([(c.name, _ARROW.get(c.type_code, pa.string())) for c in cur.description])
            if not rows and writer is not None:
                break
            cols = {nm: [_plain(r[i]) for r in rows] for i, nm in enumerate(names)}
            table = pa.table(cols, schema=schema)
            if writer is None:
                writer = (pq.ParquetWriter(out, schema) if fmt == "parquet"
                          else pacsv.CSVWriter(out, schema))
            if rows:
                writer.write_table(table)
                n += len(rows)
            if not rows:
                break
    if writer is not None:
        writer.close()
    return n


def _arrow_types() -> dict:
    import pyarrow as pa

    # PostgreSQL type oids -> Arrow types (anything else is exported as text)
    return {16: pa.bool_(), 20: pa.int64(), 21: pa.int64(), 23: pa.int64(), 700: pa.float64(), 701: pa.float64(),
            1700: pa.float64(), 25: pa.string(), 1043: pa.string(), 1042: pa.string(), 114: pa.string(),
            3802: pa.string(), 2950: pa.string(), 1082: pa.date32(), 1184: pa.timestamp("us", tz="UTC")}


_ARROW = _arrow_types()


def _plain(v):
    """Values pyarrow takes as they are (decimals as float, json as text, uuids as text)."""
    import decimal
    import json
    import uuid

    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True, default=str)
    return v

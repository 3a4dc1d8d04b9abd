"""`mimetic dashboards check`: run every panel, annotation, variable and alert query against
the database under the data source's own read-only login, with Grafana's macros and
template variables expanded (dashboards.macros), and compare the columns with the ones
each panel expects.

Variables are resolved the way Grafana does on load: a query variable runs its SQL
(with the variables before it interpolated) under the same login and takes its first
option, or every option when its default is "All"; a custom variable keeps its saved
default. A repeated panel is run once per value of its repeat variable.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import psycopg

from mimetic.config import Settings
from processors.storage import roles

from .definitions import all_dashboards
from .macros import ALL, TimeRange, Variable, interpolate, parse_interval
from .model import Dashboard
from .provisioning import DataSource, alert_rules, datasources


@dataclass
class Result:
    dashboard: str
    panel: str
    ref: str
    login: str
    sql: str
    columns: list[str] = field(default_factory=list)
    expected: tuple[str, ...] = ()
    rows: int = 0
    error: str | None = None
    may_be_empty: bool = True
    ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None and (not self.expected or tuple(self.columns) == tuple(self.expected))


def ensure_logins(s: Settings, clinic_id: str | None) -> dict[str, DataSource]:
    """The Grafana logins (created with generated passwords when missing) by group."""
    out = {}
    for ds in datasources([clinic_id] if clinic_id else []):
        roles.ensure_login(s, ds.login, ds.group, ds.clinic_id)
        out[ds.group] = ds
    return out


def default_range(d: dict[str, Any]) -> TimeRange:
    m = re.fullmatch(r"now-(\d+[smhdwMy])", d["time"]["from"])
    return TimeRange.last(timedelta(seconds=parse_interval(m.group(1)) if m else 86400))


def _run(conn: psycopg.Connection, sql: str) -> tuple[list[str], list[tuple]]:
    with conn.transaction():
        conn.execute("set transaction read only")
        conn.execute("set local statement_timeout = '30s'")
        cur = conn.execute(sql)
        cols = [c.name for c in cur.description] if cur.description else []
        return cols, cur.fetchall()


def resolve_variables(conn: psycopg.Connection, d: dict[str, Any], tr: TimeRange, timescaledb: bool = True,
                      results: list[Result] | None = None, login: str = "") -> dict[str, Variable]:
    """Variables with their options and default value; each query variable's run is added to `results`."""
    out: dict[str, Variable] = {}
    for v in d["templating"]["list"]:
        name, kind = v["name"], v["type"]
        multi, inc_all = bool(v.get("multi")), bool(v.get("includeAll"))
        if kind == "datasource":
            out[name] = Variable(name, "ds")
            continue
        if kind == "custom":
            options = [o.strip() for o in v["query"].split(",") if o.strip()]
        elif kind == "query":
            sql = interpolate(v["query"], out, tr, timescaledb=timescaledb)
            res = Result(d["uid"], f"variable {name}", "var", login, sql)
            try:
                cols, rows = _run(conn, sql)
            except psycopg.Error as exc:
                res.error = f"{type(exc).__name__}: {str(exc).strip()}"
                cols, rows = [], []
            res.columns, res.rows = cols, len(rows)
            if results is not None:
                results.append(res)
            elif res.error:
                raise RuntimeError(res.error)
            idx = cols.index("__value") if "__value" in cols else 0
            options = [str(r[idx]) for r in rows if r[idx] is not None]
        else:
            raise ValueError(f"variable type {kind} not handled")
        cur = (v.get("current") or {}).get("value")
        if cur in (ALL, [ALL]):
            value: Any = ALL
        elif cur:
            value = cur
        else:
            value = ([options[0]] if multi else options[0]) if options else ""
        out[name] = Variable(name, value, options, multi, inc_all, v.get("allValue"))
    return out


def check_dashboard(conn: psycopg.Connection, dash: Dashboard, login: str, tr: TimeRange | None = None
                    ) -> list[Result]:
    d = dash.to_json()
    tr = tr or default_range(d)
    results: list[Result] = []
    variables = resolve_variables(conn, d, tr, results=results, login=login)
    expected = dash.expected()
    for a in d["annotations"]["list"]:
        if a.get("builtIn"):
            continue
        sql = interpolate(a["target"]["rawSql"], variables, tr, timescaledb=True)
        results.append(_execute(conn, dash.uid, f"annotation {a['name']}", "Anno", login, sql,
                                dash.annotation_columns.get(a["name"], ()), True))
    for p in d["panels"]:
        if p["type"] == "row":
            continue
        scopes = [variables]
        if p.get("repeat"):
            rv = variables[p["repeat"]]
            values = rv.options if rv.value == ALL else (rv.value if isinstance(rv.value, list) else [rv.value])
            scopes = [variables | {rv.name: Variable(rv.name, val, rv.options, rv.multi, rv.include_all)}
                      for val in values]
        for t in p["targets"]:
            q = expected[(p["id"], t["refId"])]
            runs = [_execute(conn, dash.uid, p["title"], t["refId"], login,
                             interpolate(t["rawSql"], scope, tr, timescaledb=True), q.columns, q.may_be_empty,
                             t.get("format")) for scope in scopes]
            failed = [r for r in runs if r.error]
            first = failed[0] if failed else runs[0]
            first.rows = sum(r.rows for r in runs)
            results.append(first)
    return results


def _execute(conn, dash: str, panel: str, ref: str, login: str, sql: str, expected: tuple[str, ...],
             may_be_empty: bool, fmt: str | None = "table") -> Result:
    r = Result(dash, panel, ref, login, sql, expected=tuple(expected), may_be_empty=may_be_empty)
    t0 = time.perf_counter()
    try:
        r.columns, rows = _run(conn, sql)
        r.ms = (time.perf_counter() - t0) * 1000
        r.rows = len(rows)
        if fmt == "time_series" and "time" not in r.columns:
            r.error = "time_series format needs a column named time"
    except psycopg.Error as exc:
        r.error = f"{type(exc).__name__}: {str(exc).strip()}"
    return r


def check_alert_rules(conn: psycopg.Connection, login: str) -> list[Result]:
    out = []
    for rule in alert_rules():
        a = rule["data"][0]
        tr = TimeRange.last(timedelta(seconds=a["relativeTimeRange"]["from"]))
        sql = interpolate(a["model"]["rawSql"], {}, tr, timescaledb=True)
        out.append(_execute(conn, "alert-rules", rule["title"], "A", login, sql, (), True))
    return out


def check_all(s: Settings, clinic_id: str, time_range: TimeRange | None = None) -> list[Result]:
    """Every query of every dashboard and alert rule, each under its data source's login."""
    logins = ensure_logins(s, clinic_id)
    results: list[Result] = []
    conns: dict[str, psycopg.Connection] = {}
    try:
        for group, ds in logins.items():
            conns[group] = psycopg.connect(roles.login_dsn(s, ds.login), autocommit=True)
        for dash in all_dashboards():
            results += check_dashboard(conns[dash.role], dash, logins[dash.role].login, time_range)
        results += check_alert_rules(conns["operator"], logins["operator"].login)
    finally:
        for c in conns.values():
            c.close()
    return results

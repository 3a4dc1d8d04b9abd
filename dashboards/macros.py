"""Grafana's PostgreSQL query interpolation, reproduced so panel SQL can be run without Grafana.

A panel query goes through two steps in Grafana, and this module does both, in order:

1. the frontend (``templateSrv.replace``) substitutes dashboard variables: ``$var``,
   ``${var}``, ``${var:format}``, ``[[var]]`` and the built-ins ``$__from``/``$__to``
   (epoch ms), ``$__interval``/``$__interval_ms``. The SQL data sources format a value
   with ``interpolateVariable``: a string of a single-value variable is inserted with
   ``'`` doubled but *not* quoted; a multi-value or include-All variable's values are each
   single-quoted and joined with ``,``; "All" without a custom all value means every
   option's value; a custom all value is inserted raw. Unknown names stay as written.
2. the backend (``pkg/tsdb/grafana-postgresql-datasource``): ``sqleng.Interpolate``
   replaces ``$__interval_ms``, ``$__interval``, ``$__unixEpochFrom()`` and
   ``$__unixEpochTo()``; then the macro engine expands every ``$__name(args)`` (regex
   ``\\$([_a-zA-Z0-9]+)\\(([^\\)]*)\\)``: arguments cannot contain ``)``), with
   ``time_bucket`` for ``$__timeGroup`` when the data source has TimescaleDB enabled.
   An unknown macro is an error, as in Grafana.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

ALL = "$__all"

_MACRO = re.compile(r"\$([_a-zA-Z0-9]+)\(([^\)]*)\)")
# templateSrv's variable regex: $name | [[name(:fmt)]] | ${name(.path)(:fmt)}
_VARIABLE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^\}]+))?(?::([^\}]+))?\}")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "M": 30 * 86400, "y": 365 * 86400}


class MacroError(ValueError):
    """A macro Grafana would refuse (unknown name, missing argument, bad interval)."""


@dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime

    @classmethod
    def last(cls, span: timedelta, now: datetime | None = None) -> "TimeRange":
        now = now or datetime.now(timezone.utc)
        return cls(now - span, now)


@dataclass
class Variable:
    """A dashboard variable's current state as Grafana holds it after refreshing its options."""

    name: str
    value: Any                      # str, or list of str for multi; ALL for "All"
    options: list[str] = field(default_factory=list)
    multi: bool = False
    include_all: bool = False
    all_value: str | None = None    # custom all value (inserted raw)


def parse_interval(text: str) -> float:
    """Grafana interval ('5m', '1h', '30s', '100ms', '1d') -> seconds."""
    m = re.fullmatch(r"\s*'?(\d+(?:\.\d+)?)(ms|s|m|h|d|w|M|y)'?\s*", text)
    if not m:
        raise MacroError(f"error parsing interval {text}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def format_interval(seconds: float) -> str:
    """gtime.FormatInterval: the largest whole unit ('1m', '30s', '500ms')."""
    ms = int(round(seconds * 1000))
    for unit, size in (("y", 365 * 86400_000), ("d", 86400_000), ("h", 3600_000), ("m", 60_000), ("s", 1000),
                       ("ms", 1)):
        if ms >= size:
            return f"{ms // size}{unit}"
    return "1ms"


def _go_float(x: float) -> str:
    """Go's %v of a float64 (300 -> '300', 0.5 -> '0.5')."""
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _rfc3339nano(t: datetime) -> str:
    t = t.astimezone(timezone.utc)
    s = t.strftime("%Y-%m-%dT%H:%M:%S")
    if t.microsecond:
        s += ("." + f"{t.microsecond:06d}").rstrip("0")
    return s + "Z"


def _quote(v: str) -> str:
    return "'" + str(v).replace("'", "''") + "'"


def _sql_value(var: Variable) -> str:
    """Grafana's SqlDatasource.interpolateVariable for the variable's current value."""
    value = var.value
    if value == ALL or value == [ALL]:
        if var.all_value is not None:
            return var.all_value
        value = [o for o in var.options if o != ALL]
    if isinstance(value, (list, tuple)):
        return ",".join(_quote(v) for v in value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if var.multi or var.include_all:
        return _quote(value)
    return str(value).replace("'", "''")


def _formatted(var: Variable, fmt: str) -> str:
    value = var.value
    if value == ALL or value == [ALL]:
        value = var.all_value if var.all_value is not None else [o for o in var.options if o != ALL]
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if fmt in ("csv", "raw", "text"):
        return ",".join(map(str, values))
    if fmt == "sqlstring":
        return ",".join(_quote(v) for v in values)
    if fmt == "singlequote":
        return ",".join("'" + str(v).replace("'", "\\'") + "'" for v in values)
    if fmt == "doublequote":
        return ",".join('"' + str(v).replace('"', '\\"') + '"' for v in values)
    if fmt == "pipe":
        return "|".join(map(str, values))
    raise MacroError(f"variable format {fmt!r} is not supported here")


def interpolate_variables(sql: str, variables: dict[str, Variable], tr: TimeRange, interval_s: float) -> str:
    """Step 1 (frontend): dashboard variables and the built-in ones."""
    builtins = {
        "__from": str(int(tr.start.timestamp() * 1000)),
        "__to": str(int(tr.end.timestamp() * 1000)),
        "__interval": format_interval(interval_s),
        "__interval_ms": str(int(round(interval_s * 1000))),
    }

    def repl(m: re.Match) -> str:
        name = m.group(1) or m.group(2) or m.group(4)
        fmt = m.group(3) or m.group(6)
        if name in builtins and not fmt:
            return builtins[name]
        var = variables.get(name)
        if var is None:
            return m.group(0)
        return _formatted(var, fmt) if fmt else _sql_value(var)

    return _VARIABLE.sub(repl, sql)


def expand_macros(sql: str, tr: TimeRange, interval_s: float, timescaledb: bool = False) -> str:
    """Step 2 (backend): sqleng.Interpolate, then the PostgreSQL macro engine."""
    sql = sql.replace("$__interval_ms", str(int(round(interval_s * 1000))))
    sql = sql.replace("$__interval", format_interval(interval_s))
    sql = sql.replace("$__unixEpochFrom()", str(int(tr.start.timestamp())))
    sql = sql.replace("$__unixEpochTo()", str(int(tr.end.timestamp())))
    src = sql

    def evaluate(name: str, args: list[str]) -> str:
        if name in ("__time", "__timeEpoch", "__timeFilter", "__unixEpochFilter", "__unixEpochNanoFilter") \
                and (not args or args[0] == ""):
            raise MacroError(f"missing time column argument for macro {name}")
        frm, to = _rfc3339nano(tr.start), _rfc3339nano(tr.end)
        if name == "__time":
            return f'{args[0]} AS "time"'
        if name == "__timeEpoch":
            return f'extract(epoch from {args[0]}) as "time"'
        if name == "__timeFilter":
            return f"{args[0]} BETWEEN '{frm}' AND '{to}'"
        if name == "__timeFrom":
            return f"'{frm}'"
        if name == "__timeTo":
            return f"'{to}'"
        if name in ("__timeGroup", "__unixEpochGroup"):
            if len(args) < 2:
                raise MacroError(f"macro {name} needs time column and interval and optional fill value")
            secs = parse_interval(args[1].strip("'"))
            if name == "__unixEpochGroup":
                return f"floor(({args[0]})/{_go_float(secs)})*{_go_float(secs)}"
            if timescaledb:
                return f"time_bucket('{secs:.3f}s',{args[0]})"
            return f"floor(extract(epoch from {args[0]})/{_go_float(secs)})*{_go_float(secs)}"
        if name in ("__timeGroupAlias", "__unixEpochGroupAlias"):
            return evaluate(name.removesuffix("Alias"), args) + ' AS "time"'
        if name == "__unixEpochFilter":
            return f"{args[0]} >= {int(tr.start.timestamp())} AND {args[0]} <= {int(tr.end.timestamp())}"
        ns = (int(tr.start.timestamp()) * 10**9 + tr.start.microsecond * 1000,
              int(tr.end.timestamp()) * 10**9 + tr.end.microsecond * 1000)
        if name == "__unixEpochNanoFilter":
            return f"{args[0]} >= {ns[0]} AND {args[0]} <= {ns[1]}"
        if name == "__unixEpochNanoFrom":
            return str(ns[0])
        if name == "__unixEpochNanoTo":
            return str(ns[1])
        raise MacroError(f"unknown macro {name!r}")

    def repl(m: re.Match) -> str:
        name = m.group(1)
        # pre-5.3 compatibility: `$__timeGroup(...)` directly followed by ',' gets AS "time"
        if name == "__timeGroup":
            i = src.find(m.group(0))
            if i >= 0 and src[i + len(m.group(0)):i + len(m.group(0)) + 1] == ",":
                name = "__timeGroupAlias"
        return evaluate(name, [a.strip(" ") for a in m.group(2).split(",")])

    return _MACRO.sub(repl, sql)


# rangeutil.roundInterval: (below this many ms, use this many ms)
_LADDER_MS = ((10, 1), (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1500, 1000),
              (3500, 2000), (7500, 5000), (12500, 10000), (17500, 15000), (25000, 20000), (45000, 30000),
              (90000, 60000), (210000, 120000), (450000, 300000), (750000, 600000), (1050000, 900000),
              (1500000, 1200000), (2700000, 1800000), (5400000, 3600000), (9000000, 7200000),
              (16200000, 10800000), (32400000, 21600000), (86400000, 43200000), (604800000, 86400000),
              (1814400000, 604800000), (3628800000, 2592000000))


def round_interval_ms(ms: float) -> int:
    """Grafana's rangeutil.roundInterval: a "nice" interval for a raw one (ms)."""
    for below, nice in _LADDER_MS:
        if ms < below:
            return nice
    return 31536000000


def auto_interval(tr: TimeRange, max_data_points: int = 1000, min_interval: str | None = "1s") -> float:
    """$__interval as Grafana's frontend computes it: roundInterval(range / max data points),
    at least the data source's min interval (jsonData.timeInterval). Seconds."""
    ms = round_interval_ms((tr.end - tr.start).total_seconds() * 1000 / max_data_points)
    low = parse_interval(min_interval) * 1000 if min_interval else 1
    return max(ms, low) / 1000


def interpolate(sql: str, variables: dict[str, Variable], tr: TimeRange, interval_s: float | None = None,
                timescaledb: bool = False, max_data_points: int = 1000, min_interval: str | None = "1s") -> str:
    """Both steps, as Grafana runs a panel query. The interval defaults to Grafana's auto
    interval (max data points is the panel's width in pixels in Grafana; 1000 here)."""
    if interval_s is None:
        interval_s = auto_interval(tr, max_data_points, min_interval)
    return expand_macros(interpolate_variables(sql, variables, tr, interval_s), tr, interval_s, timescaledb)

"""Grafana's PostgreSQL macro and template-variable expansion (dashboards.macros), pure."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from dashboards.macros import (ALL, MacroError, TimeRange, Variable, expand_macros, format_interval, interpolate,
                               interpolate_variables, parse_interval, round_interval_ms)

TR = TimeRange(datetime(2017, 4, 21, 5, 1, 17, tzinfo=timezone.utc),
               datetime(2017, 4, 21, 5, 6, 17, 500000, tzinfo=timezone.utc))
FROM, TO = 1492750877, 1492751177


def test_time_macros_as_grafana_writes_them() -> None:
    assert expand_macros("where $__timeFilter(time)", TR, 1) == \
        "where time BETWEEN '2017-04-21T05:01:17Z' AND '2017-04-21T05:06:17.5Z'"
    assert expand_macros("$__timeFrom() $__timeTo()", TR, 1) == "'2017-04-21T05:01:17Z' '2017-04-21T05:06:17.5Z'"
    assert expand_macros("select $__time(t)", TR, 1) == 'select t AS "time"'
    assert expand_macros("select $__timeEpoch(t)", TR, 1) == 'select extract(epoch from t) as "time"'
    assert expand_macros("$__unixEpochFilter(ts)", TR, 1) == f"ts >= {FROM} AND ts <= {TO}"
    assert expand_macros("$__unixEpochFrom() $__unixEpochTo()", TR, 1) == f"{FROM} {TO}"
    assert expand_macros("$__unixEpochNanoFrom()", TR, 1) == str(FROM * 10**9)
    assert expand_macros("$__unixEpochNanoFilter(ns)", TR, 1) == \
        f"ns >= {FROM * 10**9} AND ns <= {TO * 10**9 + 500_000_000}"


def test_time_group_plain_and_timescaledb() -> None:
    assert expand_macros("select $__timeGroupAlias(time, '5m')", TR, 1) == \
        'select floor(extract(epoch from time)/300)*300 AS "time"'
    assert expand_macros("group by $__timeGroup(time, 5m)", TR, 1) == \
        "group by floor(extract(epoch from time)/300)*300"
    assert expand_macros("group by $__timeGroup(time, '0.5s')", TR, 1) == \
        "group by floor(extract(epoch from time)/0.5)*0.5"
    assert expand_macros("select $__timeGroupAlias(time, 1h)", TR, 1, timescaledb=True) == \
        "select time_bucket('3600.000s',time) AS \"time\""
    # pre-5.3 compatibility: a bare $__timeGroup followed by ',' gets the alias
    assert expand_macros("select $__timeGroup(time, 1m), v", TR, 1) == \
        'select floor(extract(epoch from time)/60)*60 AS "time", v'
    assert expand_macros("$__unixEpochGroupAlias(ts, 10s)", TR, 1) == 'floor((ts)/10)*10 AS "time"'
    # $__interval is replaced before the macros run
    assert expand_macros("$__timeGroup(time, $__interval)", TR, 0.3) == "floor(extract(epoch from time)/0.3)*0.3"
    assert expand_macros("$__interval_ms", TR, 0.3) == "300"


def test_macro_errors_like_grafana() -> None:
    with pytest.raises(MacroError, match="unknown macro"):
        expand_macros("$__nope(x)", TR, 1)
    with pytest.raises(MacroError, match="missing time column"):
        expand_macros("$__timeFilter()", TR, 1)
    with pytest.raises(MacroError, match="needs time column and interval"):
        expand_macros("$__timeGroup(time)", TR, 1)
    with pytest.raises(MacroError, match="parsing interval"):
        expand_macros("$__timeGroup(time, 'soon')", TR, 1)


def test_intervals() -> None:
    assert [format_interval(s) for s in (0.0001, 0.25, 1, 59, 60, 90, 3600, 86400 * 2)] == \
        ["1ms", "250ms", "1s", "59s", "1m", "1m", "1h", "2d"]
    assert parse_interval("5m") == 300 and parse_interval("'100ms'") == 0.1 and parse_interval("1d") == 86400


def test_variables_formatted_as_the_sql_data_sources_do() -> None:
    v = {
        "patient": Variable("patient", "P-O'NEIL"),                                    # single: not quoted
        "muscle": Variable("muscle", ["zygomaticus", "frontalis"], ["zygomaticus", "frontalis", "mentalis"],
                           multi=True, include_all=True),
        "therapy": Variable("therapy", ALL, ["microcurrent", "massage"], multi=True, include_all=True),
        "site": Variable("site", [ALL], ["S-1", "S-2"], multi=True, include_all=True, all_value="'%'"),
        "one": Variable("one", "x", ["x"], multi=True),                               # multi, one value: quoted
    }
    sql = ("p = '$patient' and m in ($muscle) and t in (${therapy}) and s like any (array[$site]) "
           "and o = $one and [[muscle]] and ${muscle:csv} and $unknown and $__from/$__to")
    out = interpolate_variables(sql, v, TR, 1)
    assert out == ("p = 'P-O''NEIL' and m in ('zygomaticus','frontalis') and t in ('microcurrent','massage') "
                   "and s like any (array['%']) and o = 'x' and 'zygomaticus','frontalis' and zygomaticus,frontalis "
                   f"and $unknown and {FROM * 1000}/{TO * 1000 + 500}")


def test_interpolate_runs_variables_then_macros_with_auto_interval() -> None:
    v = {"muscle": Variable("muscle", "zygomaticus", ["zygomaticus"], multi=True)}
    out = interpolate("select $__timeGroupAlias(time, $__interval) from t where m in ($muscle) and "
                      "$__timeFilter(time)", v, TR)
    # 300.5 s over 1000 points = 300.5 ms -> rounded to 200 ms, raised to the data source's 1 s minimum
    assert out.startswith('select floor(extract(epoch from time)/1)*1 AS "time" from t where '
                          "m in ('zygomaticus') and time BETWEEN")
    out = interpolate("$__timeGroup(time, $__interval) $__interval_ms", {}, TR, min_interval=None)
    assert out == "floor(extract(epoch from time)/0.2)*0.2 200"
    week = TimeRange(TR.start, TR.start + (TR.end - TR.start) * 2016)   # ~7 days over 1000 points -> 10 min
    assert interpolate("$__interval", {}, week) == "10m"


def test_round_interval_ladder() -> None:
    assert [round_interval_ms(x) for x in (5, 12, 300, 1000, 40000, 100000, 10**7, 10**11)] == \
        [1, 10, 200, 1000, 30000, 120000, 10800000, 31536000000]

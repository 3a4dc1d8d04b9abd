"""A small, explicit model of Grafana dashboards (plain dicts out, deterministic ids).

Panels are laid out left to right on Grafana's 24-column grid in the order they are
added; ids are 1.. in that order, so a rebuilt dashboard is byte-identical and a change
shows as a clean diff. Each query also carries the columns it must return (checked by
`mimetic dashboards check`, not written into the JSON).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 39
PG_TYPE = "grafana-postgresql-datasource"


@dataclass
class Query:
    sql: str
    columns: tuple[str, ...]
    fmt: str = "table"            # table | time_series
    may_be_empty: bool = False    # e.g. active alerts: none is a valid answer
    ref_id: str = "A"


@dataclass
class Panel:
    title: str
    description: str
    kind: str                     # timeseries | table | stat | barchart | bargauge
    queries: list[Query]
    w: int = 12
    h: int = 8
    unit: str | None = None
    min: float | None = None
    max: float | None = None
    decimals: int | None = None
    thresholds: list[tuple[float | None, str]] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    custom: dict[str, Any] = field(default_factory=dict)
    mappings: list[dict[str, Any]] = field(default_factory=list)
    overrides: list[dict[str, Any]] = field(default_factory=list)
    repeat: str | None = None


@dataclass
class Row:
    title: str


@dataclass
class Dashboard:
    uid: str
    title: str
    description: str
    datasource: dict[str, str]    # {"type": ..., "uid": ...}; uid may be "${ds}"
    role: str                     # which login group runs its queries: clinic | researcher | operator
    tags: list[str]
    variables: list[dict[str, Any]] = field(default_factory=list)
    annotations: list[dict[str, Any]] = field(default_factory=list)
    items: list[Panel | Row] = field(default_factory=list)
    time_from: str = "now-30d"
    time_to: str = "now"
    refresh: str = ""
    annotation_columns: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def add(self, *items: Panel | Row) -> "Dashboard":
        self.items.extend(items)
        return self

    # --- rendering -----------------------------------------------------------------

    def panels_json(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        x = y = row_h = 0
        pid = 0
        for it in self.items:
            pid += 1
            if isinstance(it, Row):
                if x:
                    y, x, row_h = y + row_h, 0, 0
                out.append({"id": pid, "type": "row", "title": it.title, "collapsed": False, "panels": [],
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}})
                y += 1
                continue
            if x + it.w > 24:
                y, x, row_h = y + row_h, 0, 0
            out.append(self._panel(it, pid, {"h": it.h, "w": it.w, "x": x, "y": y}))
            x += it.w
            row_h = max(row_h, it.h)
        return out

    def _panel(self, p: Panel, pid: int, grid: dict[str, int]) -> dict[str, Any]:
        defaults: dict[str, Any] = {"custom": dict(p.custom), "mappings": list(p.mappings)}
        if p.unit is not None:
            defaults["unit"] = p.unit
        if p.min is not None:
            defaults["min"] = p.min
        if p.max is not None:
            defaults["max"] = p.max
        if p.decimals is not None:
            defaults["decimals"] = p.decimals
        steps = p.thresholds or [(None, "green")]
        defaults["thresholds"] = {"mode": "absolute",
                                  "steps": [{"color": c, "value": v} for v, c in steps]}
        if p.kind == "timeseries" and "drawStyle" not in defaults["custom"]:
            defaults["custom"].update({"drawStyle": "line", "lineWidth": 2, "pointSize": 6, "showPoints": "auto",
                                       "spanNulls": False})
        panel: dict[str, Any] = {
            "id": pid, "type": p.kind, "title": p.title, "description": p.description, "gridPos": grid,
            "datasource": dict(self.datasource),
            "fieldConfig": {"defaults": defaults, "overrides": list(p.overrides)},
            "options": dict(p.options),
            "targets": [{"refId": q.ref_id, "datasource": dict(self.datasource), "editorMode": "code",
                         "rawQuery": True, "rawSql": q.sql.strip(), "format": q.fmt} for q in p.queries],
        }
        if p.repeat:
            panel["repeat"] = p.repeat
            panel["repeatDirection"] = "h"
            panel["maxPerRow"] = 2
        return panel

    def to_json(self) -> dict[str, Any]:
        return {
            "uid": self.uid, "title": self.title, "description": self.description, "tags": sorted(self.tags),
            "schemaVersion": SCHEMA_VERSION, "version": 1, "editable": True, "graphTooltip": 1,
            "timezone": "browser", "refresh": self.refresh, "liveNow": False, "fiscalYearStartMonth": 0,
            "time": {"from": self.time_from, "to": self.time_to},
            "timepicker": {},
            "templating": {"list": self.variables},
            "annotations": {"list": [{
                "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True,
                "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts",
                "type": "dashboard"}] + self.annotations},
            "links": [], "panels": self.panels_json(),
        }

    def expected(self) -> dict[tuple[int, str], Query]:
        """(panel id, refId) -> the Query with its expected columns."""
        out: dict[tuple[int, str], Query] = {}
        for pid, it in enumerate(self.items, start=1):
            if isinstance(it, Panel):
                for q in it.queries:
                    out[(pid, q.ref_id)] = q
        return out


# --- variables ----------------------------------------------------------------------

def datasource_variable(name: str, label: str, regex: str, description: str) -> dict[str, Any]:
    return {"name": name, "label": label, "type": "datasource", "query": PG_TYPE, "regex": regex,
            "description": description, "hide": 0, "includeAll": False, "multi": False, "refresh": 1,
            "current": {}, "options": [], "skipUrlSync": False}


def query_variable(name: str, label: str, ds: dict[str, str], sql: str, description: str, *, multi: bool = False,
                   include_all: bool = False, all_value: str | None = None, refresh: int = 1) -> dict[str, Any]:
    v = {"name": name, "label": label, "type": "query", "datasource": dict(ds), "query": sql.strip(),
         "definition": sql.strip(), "description": description, "hide": 0, "multi": multi,
         "includeAll": include_all, "refresh": refresh, "sort": 0, "regex": "", "current": {}, "options": [],
         "skipUrlSync": False}
    if include_all:
        v["current"] = {"selected": True, "text": ["All"], "value": ["$__all"]}
    if all_value is not None:
        v["allValue"] = all_value
    return v


def custom_variable(name: str, label: str, values: list[str], description: str, *, multi: bool = True,
                    include_all: bool = True, default: str | None = None, all_value: str | None = None
                    ) -> dict[str, Any]:
    opts = ([{"selected": default is None, "text": "All", "value": "$__all"}] if include_all else []) + [
        {"selected": v == default, "text": v, "value": v} for v in values]
    if default is None and include_all:
        current = {"selected": True, "text": ["All"], "value": ["$__all"]}
    else:
        d = default if default is not None else values[0]
        current = {"selected": True, "text": [d] if multi else d, "value": [d] if multi else d}
    v = {"name": name, "label": label, "type": "custom", "query": ",".join(values), "description": description,
         "hide": 0, "multi": multi, "includeAll": include_all, "current": current, "options": opts,
         "skipUrlSync": False}
    if all_value is not None:
        v["allValue"] = all_value
    return v

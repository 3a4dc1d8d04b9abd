"""Grafana provisioning: data sources (read-only roles), dashboard provider, alert rules, contact point.

Output is deterministic (sorted keys, stable uids). Passwords are never written: data
sources carry ``${MIMETIC_PG_ROLE_<LOGIN>}`` placeholders that Grafana expands from its
environment at start-up (and `mimetic dashboards deploy` fills from the secrets dir).
Provisioning files are JSON documents in ``.yaml`` files (JSON is valid YAML), with a
generated-by comment.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mimetic.config import Settings
from .definitions import all_dashboards
from .model import PG_TYPE, Dashboard

FOLDERS = {"clinic": ("mimetic-clinic", "Mimetic · Clinic"), "researcher": ("mimetic-research", "Mimetic · Research"),
           "operator": ("mimetic-ops", "Mimetic · Operations")}
CONTACT_POINT = "mimetic-oncall"
ALERT_FOLDER = FOLDERS["operator"]


@dataclass(frozen=True)
class DataSource:
    uid: str
    name: str
    login: str          # PostgreSQL login role
    group: str          # clinic | researcher | operator
    clinic_id: str | None = None

    @property
    def password_env(self) -> str:
        return "MIMETIC_PG_ROLE_" + self.login.upper()


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:40] or "x"


def datasources(clinics: list[str]) -> list[DataSource]:
    out = [DataSource("mimetic-research", "mimetic-research", "grafana_researcher", "researcher"),
           DataSource("mimetic-ops", "mimetic-ops", "grafana_operator", "operator")]
    for c in sorted(set(clinics)):
        s = slug(c)
        out.append(DataSource(f"mimetic-clinic-{s.replace('_', '-')}", f"mimetic-clinic-{s.replace('_', '-')}",
                              f"grafana_clinic_{s}", "clinic", c))
    return out


#: libpq sslmode -> Grafana's (which has no allow/prefer: both connect without TLS there)
GRAFANA_SSLMODE = {"disable": "disable", "allow": "disable", "prefer": "disable", "require": "require",
                   "verify-ca": "verify-ca", "verify-full": "verify-full"}


def grafana_tls(s: Settings) -> dict[str, str]:
    """A data source's TLS fields following MIMETIC_PG_SSLMODE / MIMETIC_PG_SSLROOTCERT (the CA file's
    path must be the same on the Grafana host)."""
    out = {"sslmode": GRAFANA_SSLMODE[s.pg_sslmode]}
    if out["sslmode"] != "disable" and s.pg_sslrootcert is not None:
        out |= {"tlsConfigurationMethod": "file-path", "sslRootCertFile": str(s.pg_sslrootcert)}
    return out


def datasource_payload(ds: DataSource, s: Settings, password: str | None = None) -> dict[str, Any]:
    """The data source as Grafana's API takes it (placeholder password unless given)."""
    return {
        "uid": ds.uid, "name": ds.name, "type": PG_TYPE, "access": "proxy",
        "url": f"{s.pg_host}:{s.pg_port}", "user": ds.login, "database": s.pg_database, "isDefault": False,
        "jsonData": {"database": s.pg_database, "postgresVersion": 1500, "timescaledb": True,
                     "maxOpenConns": 5, "maxIdleConns": 2, "connMaxLifetime": 14400, "timeInterval": "1s",
                     **grafana_tls(s)},
        "secureJsonData": {"password": password if password is not None else "${" + ds.password_env + "}"},
    }


# --- alert rules -------------------------------------------------------------------------------
# Device and patient-safety alerts (processors.records.ALERT_TYPES) are delivered by the notifier
# (alerts/: receivers per clinic and for the operators, acknowledgement, escalation), from the same
# records the pipeline emits. Grafana keeps only the pipeline's own health, which no alert record
# describes.


def _sql_alert(uid: str, title: str, sql: str, op: str, threshold: float, severity: str, summary: str,
               for_: str = "0s", window_s: int = 600, no_data: str = "OK") -> dict[str, Any]:
    return {
        "uid": uid, "title": title, "condition": "C", "for": for_, "noDataState": no_data, "execErrState": "Error",
        "isPaused": False,
        "labels": {"severity": severity, "service": "mimetic", "audience": "operator"},
        "annotations": {"summary": summary, "description": "{{ $values.B }}"},
        "notification_settings": {"receiver": CONTACT_POINT},
        "data": [
            {"refId": "A", "datasourceUid": "mimetic-ops", "relativeTimeRange": {"from": window_s, "to": 0},
             "model": {"refId": "A", "rawQuery": True, "editorMode": "code", "format": "table", "rawSql": sql,
                       "intervalMs": 1000, "maxDataPoints": 43200}},
            {"refId": "B", "datasourceUid": "__expr__", "relativeTimeRange": {"from": 0, "to": 0},
             "model": {"refId": "B", "type": "reduce", "expression": "A", "reducer": "last",
                       "settings": {"mode": "dropNN"}}},
            {"refId": "C", "datasourceUid": "__expr__", "relativeTimeRange": {"from": 0, "to": 0},
             "model": {"refId": "C", "type": "threshold", "expression": "B",
                       "conditions": [{"evaluator": {"type": op, "params": [threshold]}}]}},
        ],
    }


def alert_rules() -> list[dict[str, Any]]:
    """Pipeline health only (device alerts go through the notifier)."""
    return [
        _sql_alert(
            "mimetic-pipeline-lag", "Pipeline: sink lag",
            "select component, max(max_lag)::float8 as lag from ops.pipeline_throughput where $__timeFilter(time) "
            "group by component", "gt", 10000, "warning",
            "The database sink is more than 10,000 records behind the derived topics.", for_="5m", window_s=300),
        _sql_alert(
            "mimetic-pipeline-dead-letters", "Pipeline: dead letters",
            "select component, sum(dead_letters)::float8 as dead_letters from ops.pipeline_throughput "
            "where $__timeFilter(time) group by component", "gt", 0, "warning",
            "Records were sent to the dead-letter topic in the last 10 minutes (see their reason header)."),
        _sql_alert(
            "mimetic-pipeline-data-gaps", "Pipeline: frames lost",
            "select device_id, sum(missing_frames)::float8 as missing from stream_stats where $__timeFilter(time) "
            "group by device_id having sum(missing_frames) > 0", "gt", 100, "warning",
            "A device lost more than 100 frames in 10 minutes (network or device trouble)."),
        _sql_alert(
            "mimetic-notify-backlog", "Pipeline: alert deliveries waiting",
            "select count(*)::float8 as waiting from ops.alert_delivery_backlog", "gt", 0, "warning",
            "Alert notifications have waited more than 5 minutes for their receiver (see `mimetic alerts list`).",
            for_="5m", window_s=300),
    ]


def alert_rules_file() -> dict[str, Any]:
    return {"apiVersion": 1, "groups": [{
        "orgId": 1, "name": "mimetic-device-and-pipeline", "folder": ALERT_FOLDER[1], "interval": "1m",
        "rules": alert_rules()}]}


def contact_points_file() -> dict[str, Any]:
    return {"apiVersion": 1, "contactPoints": [{
        "orgId": 1, "name": CONTACT_POINT,
        "receivers": [{"uid": "mimetic-oncall-email", "type": "email", "disableResolveMessage": False,
                       "settings": {"addresses": "${MIMETIC_ALERT_EMAIL}",
                                    "singleEmail": True}}]}]}


def dashboard_provider_file(root: str) -> dict[str, Any]:
    return {"apiVersion": 1, "providers": [
        {"name": f"mimetic-{role}", "orgId": 1, "folder": title, "folderUid": uid, "type": "file",
         "disableDeletion": False, "allowUiUpdates": False, "updateIntervalSeconds": 60,
         "options": {"path": f"{root}/{role}", "foldersFromFilesStructure": False}}
        for role, (uid, title) in sorted(FOLDERS.items())]}


# --- writing -----------------------------------------------------------------------------------

def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _yaml(obj: Any) -> str:
    return "# generated by `mimetic dashboards build`: do not edit (JSON is valid YAML)\n" + dumps(obj)


def build(out: Path, s: Settings, clinics: list[str], dashboards_root: str = "/var/lib/grafana/dashboards/mimetic"
          ) -> list[Path]:
    """Write dashboards/<role>/<uid>.json and provisioning/{datasources,dashboards,alerting}/*.yaml."""
    written: list[Path] = []

    def write(rel: str, text: str) -> None:
        p = out / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        written.append(p)

    for d in all_dashboards():
        write(f"dashboards/{d.role}/{d.uid}.json", dumps(d.to_json()))
    write("provisioning/datasources/mimetic.yaml", _yaml({
        "apiVersion": 1,
        "datasources": [datasource_payload(ds, s) | {"orgId": 1, "editable": False} for ds in datasources(clinics)]}))
    write("provisioning/dashboards/mimetic.yaml", _yaml(dashboard_provider_file(dashboards_root)))
    write("provisioning/alerting/mimetic-rules.yaml", _yaml(alert_rules_file()))
    write("provisioning/alerting/mimetic-contact-points.yaml", _yaml(contact_points_file()))
    return written


def dashboard_by_uid() -> dict[str, Dashboard]:
    return {d.uid: d for d in all_dashboards()}

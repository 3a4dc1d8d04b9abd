"""Dashboards as code: deterministic output, the structure Grafana expects, provisioning without secrets."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from dashboards.definitions import all_dashboards
from dashboards.deploy import comparable_dashboard, dashboard_payloads, datasource_payloads, differs, rule_group_payload
from dashboards.model import PG_TYPE, SCHEMA_VERSION
from dashboards.provisioning import FOLDERS, alert_rules, build, datasources
from mimetic.cli import app
from mimetic.config import Settings
from processors.records import ALERT_TYPES

S = Settings(pg_database="mimetic_prod")
CLINICS = ["clinic-b", "clinic-a"]


def _load(path: Path):
    text = path.read_text()
    return json.loads("\n".join(line for line in text.splitlines() if not line.startswith("#")))


def test_build_is_deterministic_with_sorted_keys(tmp_path: Path) -> None:
    a = build(tmp_path / "a", S, CLINICS)
    b = build(tmp_path / "b", S, list(reversed(CLINICS)))
    assert [p.relative_to(tmp_path / "a") for p in a] == [p.relative_to(tmp_path / "b") for p in b]
    for pa, pb in zip(a, b):
        assert pa.read_bytes() == pb.read_bytes(), pa
        obj = _load(pa)
        assert json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n" in pa.read_text()


def _overlap(a: dict, b: dict) -> bool:
    return a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"] and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]


def test_dashboard_structure(tmp_path: Path) -> None:
    build(tmp_path, S, CLINICS)
    files = sorted((tmp_path / "dashboards").rglob("*.json"))
    assert len(files) == 4
    uids = set()
    ds_uids = {d.uid for d in datasources(CLINICS)}
    for f in files:
        d = json.loads(f.read_text())
        assert d["schemaVersion"] == SCHEMA_VERSION and d["uid"] not in uids and d["title"] and d["description"]
        uids.add(d["uid"])
        assert f.parent.name in FOLDERS
        panels = d["panels"]
        ids = [p["id"] for p in panels]
        assert len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids)
        for i, p in enumerate(panels):
            g = p["gridPos"]
            assert set(g) == {"h", "w", "x", "y"} and 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0
            for q in panels[i + 1:]:
                assert not _overlap(g, q["gridPos"]), (p["title"], q["title"])
            if p["type"] == "row":
                continue
            assert p["description"], p["title"]
            refs = [p["datasource"]] + [t["datasource"] for t in p["targets"]]
            for ref in refs:
                assert ref["type"] == PG_TYPE and (ref["uid"] in ds_uids or ref["uid"] == "${ds}"), ref
            assert p["targets"] and all(t["rawSql"] and t["format"] in ("table", "time_series") and t["refId"]
                                        for t in p["targets"])
            if p["type"] == "timeseries":
                assert "unit" in p["fieldConfig"]["defaults"], p["title"]
        names = [v["name"] for v in d["templating"]["list"]]
        assert len(names) == len(set(names))
        for v in d["templating"]["list"]:
            assert v["type"] in ("query", "custom", "datasource") and v["description"]
            if v["type"] == "query":
                assert v["datasource"]["type"] == PG_TYPE and v["query"]
        if d["uid"].startswith("mimetic-clinic"):
            assert {"ds", "clinic", "patient", "muscle"} <= set(names)
            assert d["templating"]["list"][0]["regex"] == "/^mimetic-clinic/"
        if d["uid"] == "mimetic-clinic-progress":
            assert "therapy" in names
        if d["uid"] == "mimetic-research-cohort":
            assert {"therapy", "muscle", "site"} <= set(names)
            sql = " ".join(t["rawSql"] for p in panels for t in p.get("targets", []))
            assert "research." in sql and " from patient " not in sql and "patient_identity" not in sql
    assert uids == {d.uid for d in all_dashboards()}


def test_provisioning_uses_read_only_logins_and_placeholders(tmp_path: Path) -> None:
    build(tmp_path, S, CLINICS)
    ds = _load(tmp_path / "provisioning/datasources/mimetic.yaml")["datasources"]
    users = {d["uid"]: d["user"] for d in ds}
    assert users == {"mimetic-research": "grafana_researcher", "mimetic-ops": "grafana_operator",
                     "mimetic-clinic-clinic-a": "grafana_clinic_clinic_a",
                     "mimetic-clinic-clinic-b": "grafana_clinic_clinic_b"}
    import re

    clinic_regex = re.compile(all_dashboards()[0].variables[0]["regex"].strip("/"))
    assert sorted(d["name"] for d in ds if clinic_regex.search(d["name"])) == [
        "mimetic-clinic-clinic-a", "mimetic-clinic-clinic-b"]
    for d in ds:
        assert d["type"] == PG_TYPE and d["jsonData"]["database"] == "mimetic_prod" and d["editable"] is False
        assert d["secureJsonData"]["password"] == "${MIMETIC_PG_ROLE_" + d["user"].upper() + "}"
    # no real secret anywhere in the output
    secrets = [p.read_text().strip() for p in S.secrets_dir.glob("*")] if S.secrets_dir.exists() else []
    blob = "".join(p.read_text() for p in tmp_path.rglob("*") if p.is_file())
    assert not [s for s in secrets if s and s in blob]
    prov = _load(tmp_path / "provisioning/dashboards/mimetic.yaml")["providers"]
    assert {p["folderUid"] for p in prov} == {uid for uid, _ in FOLDERS.values()}
    cps = _load(tmp_path / "provisioning/alerting/mimetic-contact-points.yaml")["contactPoints"]
    assert cps[0]["receivers"][0]["settings"]["addresses"].startswith("${")


def test_grafana_alert_rules_are_pipeline_health_only(tmp_path: Path) -> None:
    """Device and safety alerts go through the notifier (alerts/); Grafana watches the pipeline."""
    build(tmp_path, S, CLINICS)
    groups = _load(tmp_path / "provisioning/alerting/mimetic-rules.yaml")["groups"]
    rules = groups[0]["rules"]
    uids = [r["uid"] for r in rules]
    assert len(uids) == len(set(uids)) and all(len(u) <= 40 for u in uids)
    sqls = " ".join(r["data"][0]["model"]["rawSql"] for r in rules)
    for t in ALERT_TYPES:
        assert f"'{t}'" not in sqls
    assert "active_alert" not in sqls and "alert_delivery_backlog" in sqls
    assert any("pipeline_throughput" in r["data"][0]["model"]["rawSql"] and "lag" in r["title"] for r in rules)
    for r in rules:
        assert r["condition"] == "C" and r["labels"]["severity"] in ("info", "warning", "critical")
        assert r["data"][0]["datasourceUid"] == "mimetic-ops"
        assert [q["refId"] for q in r["data"]] == ["A", "B", "C"]
        assert r["notification_settings"]["receiver"] == "mimetic-oncall"
        assert r["title"].startswith("Pipeline:") and r["labels"]["audience"] == "operator"


def test_deploy_payloads_and_comparison() -> None:
    ds = datasource_payloads(S, CLINICS, with_passwords=False)
    assert all("secureJsonData" not in d for d in ds) and {d["user"] for d in ds} >= {"grafana_researcher"}
    dashes = dashboard_payloads()
    assert all(p["overwrite"] and p["folderUid"] in {u for u, _ in FOLDERS.values()} for p in dashes)
    g = rule_group_payload()
    assert g["interval"] == 60 and len(g["rules"]) == len(alert_rules())
    assert all(r["folderUID"] == g["folderUid"] and r["ruleGroup"] == g["title"] for r in g["rules"])
    # what the server answers has extra fields (id, version, meta): same content -> nothing to do
    d = comparable_dashboard(dashes[0]["dashboard"])
    server = json.loads(json.dumps(d)) | {"id": 17, "version": 4}
    assert not differs(server, d)
    server["panels"][1]["title"] = "edited in the UI"
    assert differs(server, d)
    assert differs({"rules": []}, g)


def test_deploy_fails_loudly_without_a_server() -> None:
    from dashboards.deploy import deploy
    from mimetic.net import free_loopback_port

    port = free_loopback_port()
    try:
        deploy(f"http://127.0.0.1:{port}", "token", S, [], update_passwords=False)
    except Exception as exc:  # a refused connection, never a reported success
        assert "refused" in str(exc).lower() or "connect" in str(exc).lower(), repr(exc)
    else:
        raise AssertionError("deploy reported success without a Grafana server")


def test_cli_build(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["dashboards", "build", "--out", str(tmp_path), "--clinic", "c1"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "dashboards/clinic/mimetic-clinic-progress.json").exists()
    assert "mimetic-clinic-c1" in (tmp_path / "provisioning/datasources/mimetic.yaml").read_text()

"""`mimetic dashboards deploy --url URL --token TOKEN`: push data sources, folders, dashboards,
the contact point and the alert rule group to a Grafana server over its HTTP API with
grafana-client (a maintained client).

Idempotent: every object is read first and written only when what we would send differs
from what the server has (`differs` compares the fields we manage), so a second run
changes nothing and reports every object as "unchanged". Data source passwords come
from the secrets dir ($MIMETIC_HOME/secrets/pg-role-<login>) and are sent only when the
data source is created or `--update-passwords` is given (Grafana never returns them, so
they cannot be compared).

Not tested against a real Grafana (none can be installed on the development machines):
the tests cover the payloads, the comparison and a refused connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from mimetic.config import Settings
from processors.storage import roles

from .definitions import all_dashboards
from .provisioning import (ALERT_FOLDER, CONTACT_POINT, FOLDERS, alert_rules, contact_points_file,
                           datasource_payload, datasources)

GROUP = "mimetic-device-and-pipeline"
GROUP_INTERVAL_S = 60


@dataclass
class Step:
    kind: str        # datasource | folder | dashboard | contactpoint | rulegroup
    key: str
    action: str      # create | update | unchanged


def differs(current: Any, desired: Any) -> bool:
    """True when `desired` has a value that `current` lacks or holds differently (extra server fields ignored)."""
    if isinstance(desired, dict):
        if not isinstance(current, dict):
            return True
        return any(differs(current.get(k), v) for k, v in desired.items())
    if isinstance(desired, list):
        if not isinstance(current, list) or len(current) != len(desired):
            return True
        return any(differs(c, d) for c, d in zip(current, desired))
    return current != desired


def folder_payloads() -> list[dict[str, str]]:
    return [{"uid": uid, "title": title} for uid, title in sorted(FOLDERS.values())]


def dashboard_payloads() -> list[dict[str, Any]]:
    return [{"dashboard": d.to_json(), "folderUid": FOLDERS[d.role][0], "overwrite": True,
             "message": "mimetic dashboards deploy"} for d in all_dashboards()]


def comparable_dashboard(d: dict[str, Any]) -> dict[str, Any]:
    """The dashboard fields we manage (Grafana owns id and version)."""
    return {k: v for k, v in d.items() if k not in ("id", "version")}


def rule_group_payload() -> dict[str, Any]:
    folder_uid = ALERT_FOLDER[0]
    rules = [r | {"folderUID": folder_uid, "ruleGroup": GROUP, "orgID": 1} for r in alert_rules()]
    return {"title": GROUP, "folderUid": folder_uid, "interval": GROUP_INTERVAL_S, "rules": rules}


def contact_point_payload() -> dict[str, Any]:
    cp = contact_points_file()["contactPoints"][0]
    r = cp["receivers"][0]
    return {"uid": r["uid"], "name": cp["name"], "type": r["type"], "settings": r["settings"],
            "disableResolveMessage": r["disableResolveMessage"]}


def datasource_payloads(s: Settings, clinics: list[str], with_passwords: bool) -> list[dict[str, Any]]:
    out = []
    for ds in datasources(clinics):
        p = datasource_payload(ds, s, roles.role_password(s, ds.login) if with_passwords else None)
        if not with_passwords:
            p.pop("secureJsonData")
        out.append(p)
    return out


def _get(fn: Callable[[], Any]) -> Any | None:
    from grafana_client.client import GrafanaClientError

    try:
        return fn()
    except GrafanaClientError as exc:
        if getattr(exc, "status_code", None) == 404:
            return None
        raise


def deploy(url: str, token: str, s: Settings, clinics: list[str], update_passwords: bool = False,
           contact_email: str | None = None) -> list[Step]:
    from grafana_client import GrafanaApi

    api = GrafanaApi.from_url(url, credential=token)
    api.health.check()  # fail fast (connection refused, bad URL) before anything is read or sent
    steps: list[Step] = []
    # data sources (the clinic logins must exist: `mimetic dashboards check --clinic` or `roles create`)
    for p in datasource_payloads(s, clinics, with_passwords=True):
        cur = _get(lambda: api.datasource.get_datasource_by_uid(p["uid"]))
        if cur is None:
            api.datasource.create_datasource(p)
            steps.append(Step("datasource", p["uid"], "create"))
            continue
        compare = {k: v for k, v in p.items() if k != "secureJsonData"}
        if differs(cur, compare) or update_passwords:
            send = p if update_passwords else compare
            api.datasource.update_datasource_by_uid(p["uid"], send | {"id": cur.get("id")})
            steps.append(Step("datasource", p["uid"], "update"))
        else:
            steps.append(Step("datasource", p["uid"], "unchanged"))
    for f in folder_payloads():
        cur = _get(lambda: api.folder.get_folder(f["uid"]))
        if cur is None:
            api.folder.create_folder(f["title"], uid=f["uid"])
            steps.append(Step("folder", f["uid"], "create"))
        elif cur.get("title") != f["title"]:
            api.folder.update_folder(f["uid"], title=f["title"], overwrite=True)
            steps.append(Step("folder", f["uid"], "update"))
        else:
            steps.append(Step("folder", f["uid"], "unchanged"))
    for p in dashboard_payloads():
        uid = p["dashboard"]["uid"]
        cur = _get(lambda: api.dashboard.get_dashboard(uid))
        desired = comparable_dashboard(p["dashboard"])
        if cur is not None and not differs(cur.get("dashboard"), desired) \
                and (cur.get("meta") or {}).get("folderUid") == p["folderUid"]:
            steps.append(Step("dashboard", uid, "unchanged"))
            continue
        api.dashboard.update_dashboard(p | {"dashboard": desired})
        steps.append(Step("dashboard", uid, "create" if cur is None else "update"))
    cp = contact_point_payload()
    if contact_email:
        cp["settings"] = cp["settings"] | {"addresses": contact_email}
    existing = [c for c in (api.alertingprovisioning.get_contactpoints(name=CONTACT_POINT) or [])
                if c.get("uid") == cp["uid"]]
    if not existing:
        api.alertingprovisioning.create_contactpoint(cp)
        steps.append(Step("contactpoint", cp["uid"], "create"))
    elif differs(existing[0], cp):
        api.alertingprovisioning.update_contactpoint(cp["uid"], cp)
        steps.append(Step("contactpoint", cp["uid"], "update"))
    else:
        steps.append(Step("contactpoint", cp["uid"], "unchanged"))
    g = rule_group_payload()
    cur = _get(lambda: api.alertingprovisioning.get_rule_group(g["folderUid"], GROUP))
    if cur is None or differs(cur, g):
        api.alertingprovisioning.update_rule_group(g["folderUid"], GROUP, g)
        steps.append(Step("rulegroup", GROUP, "create" if cur is None else "update"))
    else:
        steps.append(Step("rulegroup", GROUP, "unchanged"))
    return steps

"""Every MIMETIC_* variable the deployment files set is a setting of mimetic/config.py, so a
misspelt name cannot be silently ignored by a pod. Settings the manifests already use but
that other work adds to the code are listed in PENDING_SETTINGS: when one lands, this test
asks for its removal from the list, so the list never outlives its reason."""

from __future__ import annotations

import yaml

from mimetic.config import REPO_ROOT, Settings
from mimetic.deploy import CONFIG_ENV, K8S_DIR

#: proposed for the code by the deployment files, not settings yet (none now)
PENDING_SETTINGS: set[str] = set()


def _names(node: object) -> set[str]:
    """Every MIMETIC_* name set under `node` (env lists, env mappings, literals)."""
    found: set[str] = set()
    if isinstance(node, dict):
        if isinstance(node.get("name"), str) and node["name"].startswith("MIMETIC_") and (
                "value" in node or "valueFrom" in node):
            found.add(node["name"])
        for key, value in node.items():
            if isinstance(key, str) and key.startswith("MIMETIC_") and key.isupper() and not isinstance(value, dict):
                found.add(key)
            found |= _names(value)
    elif isinstance(node, list):
        for value in node:
            if isinstance(value, str) and value.startswith("MIMETIC_") and "=" in value:
                found.add(value.split("=", 1)[0])
            found |= _names(value)
    return found


def deployment_settings() -> set[str]:
    names = {line.split("=", 1)[0] for line in CONFIG_ENV.read_text().splitlines() if line.startswith("MIMETIC_")}
    files = [*K8S_DIR.rglob("*.yaml"), REPO_ROOT / "deploy" / "compose" / "compose.yaml"]
    for path in files:
        for doc in yaml.safe_load_all(path.read_text()):
            names |= _names(doc)
    return names - {"MIMETIC_PG_ROLE_GRAFANA_RESEARCHER", "MIMETIC_PG_ROLE_GRAFANA_OPERATOR",
                    "MIMETIC_ALERT_EMAIL"}  # Grafana's provisioning placeholders, not settings


def test_every_deployment_variable_is_a_setting() -> None:
    known = {f"MIMETIC_{name.upper()}" for name in Settings.model_fields}
    used = deployment_settings()
    assert "MIMETIC_TOPIC_PARTITIONS" in used and "MIMETIC_SINK_PG_USER" in used
    unknown = used - known - PENDING_SETTINGS
    assert not unknown, f"not settings of mimetic/config.py (misspelt?): {sorted(unknown)}"
    landed = PENDING_SETTINGS & known
    assert not landed, f"now settings: remove them from PENDING_SETTINGS: {sorted(landed)}"
    assert not PENDING_SETTINGS - used, "PENDING_SETTINGS lists a name no deployment file uses"

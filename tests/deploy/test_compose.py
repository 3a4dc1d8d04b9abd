"""The single-host compose file validates against the compose specification and keeps the
deployment's rules: restart policies, health checks on the admin ports, the schema and the
topics before the services, passwords from files, non-root read-only containers."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from mimetic.config import REPO_ROOT, Settings
from mimetic.deploy import COMPOSE_SECRET_FILES, CONFIG_ENV, write_secret_files

from .schemas import validate_compose

COMPOSE_DIR = REPO_ROOT / "deploy" / "compose"
APP = {"gateway": "MIMETIC_GATEWAY_ADMIN_PORT", "worker": "MIMETIC_WORKER_ADMIN_PORT",
       "sink": "MIMETIC_SINK_ADMIN_PORT", "notify": "MIMETIC_NOTIFY_ADMIN_PORT"}
ONE_SHOT = ("migrate", "topics")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((COMPOSE_DIR / "compose.yaml").read_text())


def test_compose_file_validates_against_the_specification(compose: dict[str, Any]) -> None:
    validate_compose(compose)
    sink = compose["services"]["sink"]
    for spoilt in (dict(sink, restart=3), dict(sink, restar="always")):
        with pytest.raises(AssertionError):
            validate_compose(dict(compose, services=dict(compose["services"], sink=spoilt)))


def test_services_restart_and_start_in_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"kafka", "db", *APP, *ONE_SHOT}
    for name in ("kafka", "db", *APP):
        assert services[name]["restart"] == "unless-stopped", name
    for name in ONE_SHOT:
        assert services[name]["restart"].startswith("on-failure"), name
    assert services["migrate"]["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert services["topics"]["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    for name in APP:
        deps = services[name]["depends_on"]
        assert deps["migrate"]["condition"] == deps["topics"]["condition"] == "service_completed_successfully"
        assert deps["kafka"]["condition"] == deps["db"]["condition"] == "service_healthy"
    assert services["worker"]["deploy"]["replicas"] == 2


def test_health_checks_use_the_admin_ports(compose: dict[str, Any]) -> None:
    services = compose["services"]
    k8s = dict(line.split("=", 1) for line in CONFIG_ENV.read_text().splitlines()
               if line.startswith("MIMETIC_"))
    for name, setting in APP.items():
        env = services[name]["environment"]
        port = env[setting]
        test = " ".join(services[name]["healthcheck"]["test"])
        assert re.search(rf"http://127\.0\.0\.1:{port}/(livez|readyz)", test), name
        assert port == k8s[setting], name  # the same port numbers as in Kubernetes
    for name in ("kafka", "db"):
        assert services[name]["healthcheck"]["test"], name
    assert services["kafka"]["image"] == f"apache/kafka:{Settings.model_fields['kafka_version'].default}"
    assert services["db"]["image"].startswith("timescale/timescaledb:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft


def test_passwords_come_from_files_only(compose: dict[str, Any], tmp_path) -> None:
    files = {s["file"].removeprefix("./secrets/") for s in compose["secrets"].values()}
    assert files == set(COMPOSE_SECRET_FILES)
    assert "secrets/" in (COMPOSE_DIR / ".gitignore").read_text().splitlines()
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if re.search("PASSWORD|SECRET|TOKEN", key):
                assert key.endswith("_FILE") and str(value).startswith("/run/secrets/"), f"{name}: {key}"
    made = write_secret_files(tmp_path / "secrets", compose=True)
    assert sorted(p.name for p in made) == sorted(COMPOSE_SECRET_FILES)
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in made)
    assert (tmp_path / "secrets").stat().st_mode & 0o777 == 0o700
    assert write_secret_files(tmp_path / "secrets", compose=True) == []  # never rotates


def test_service_logins_match_the_database_init(compose: dict[str, Any]) -> None:
    init = (COMPOSE_DIR / "initdb" / "10-mimetic.sh").read_text()
    services = compose["services"]
    for name, setting in (("gateway", "MIMETIC_GATEWAY_PG_USER"), ("sink", "MIMETIC_SINK_PG_USER"),
                          ("notify", "MIMETIC_NOTIFY_PG_USER")):
        login = services[name]["environment"][setting]
        assert re.search(rf"create role {login} login password '\$\(pw (\w+)\)'", init), login
        secret = re.search(rf"create role {login} login password '\$\(pw (\w+)\)'", init).group(1)
        mounts = {s["source"]: s["target"] for s in services[name]["secrets"] if isinstance(s, dict)}
        assert mounts[secret] == f"/var/lib/mimetic/secrets/pg-role-{login}", name
    owner = services["migrate"]["secrets"][0]
    assert owner["target"] == "/var/lib/mimetic/secrets/pg-password"
    assert f"create role {services['migrate']['environment']['MIMETIC_PG_USER']} login" in init


def test_mimetic_containers_are_non_root_and_read_only(compose: dict[str, Any]) -> None:
    for name in (*APP, *ONE_SHOT):
        service = compose["services"][name]
        assert service["user"].split(":")[0] != "0" and service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
    assert compose["networks"]["backend"]["internal"] is True
    for name in ("kafka", "db"):
        assert "ports" not in compose["services"][name], name


def test_vendored_schemas_are_the_documented_files() -> None:
    import hashlib

    here = REPO_ROOT / "tests" / "deploy"
    table = dict(re.findall(r"^\| `([^`]+)` \|.*\| `([0-9a-f]{64})` \|$", (here / "README.md").read_text(), re.M))
    vendored = {p.relative_to(here).as_posix() for p in [*here.glob("crds/*.yaml"), *here.glob("schemas/*.json")]}
    assert set(table) == vendored
    for rel, digest in table.items():
        assert hashlib.sha256((here / rel).read_bytes()).hexdigest() == digest, rel

"""The Kubernetes overlays render, every object validates against its schema (built-in kinds
and the Strimzi / CloudNativePG custom resources), and the deployment keeps its promises:
probes, resources, non-root read-only pods, no literal secrets, workers within the
partitions, replication 3 with min.insync.replicas 2, only the gateway writes raw topics."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from mimetic import topics as T
from mimetic.config import REPO_ROOT
from mimetic.deploy import (
    CONFIG_ENV,
    K8S_DIR,
    KAFKA_CLUSTER,
    WORKER_TABLES,
    generated_files,
    kafka_topics,
    settings_from_env_file,
)

from .conftest import Rendered
from .schemas import crd_schemas, validate_builtin, validate_custom

POD_KINDS = {"Deployment", "Job", "CronJob"}
#: Secrets the operators make: Strimzi (one per KafkaUser, the cluster CA), CloudNativePG (CA)
OPERATOR_SECRETS = {f"{KAFKA_CLUSTER}-cluster-ca-cert", "mimetic-pg-ca"}
#: Secrets an operator of the product creates by hand where needed (README "Deployment")
OPTIONAL_SECRETS = {"mimetic-notify-webhooks", "mimetic-grafana-clinic-logins"}
#: per service: its admin-port setting (the probes' port) and its Kafka principal
SERVICES = {
    "mimetic-gateway": ("MIMETIC_GATEWAY_ADMIN_PORT", "mimetic-gateway"),
    "mimetic-worker": ("MIMETIC_WORKER_ADMIN_PORT", "mimetic-worker"),
    "mimetic-sink": ("MIMETIC_SINK_ADMIN_PORT", "mimetic-sink"),
    "mimetic-notify": ("MIMETIC_NOTIFY_ADMIN_PORT", "mimetic-notify"),
}


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return obj["spec"]["template"]["spec"]


def pods(r: Rendered) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(o, pod_spec(o)) for o in r.objects if o["kind"] in POD_KINDS]


def config(r: Rendered) -> dict[str, str]:
    (cm,) = [o for o in r.of_kind("ConfigMap") if o["metadata"]["name"].startswith("mimetic-config")]
    return cm["data"]


# --- schemas ------------------------------------------------------------------------------


def test_every_object_validates(rendered: Rendered) -> None:
    kinds = {o["kind"] for o in rendered.objects}
    assert {"Deployment", "Service", "Ingress", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Job",
            "CronJob", "NetworkPolicy", "Secret", "ConfigMap", "Kafka", "KafkaNodePool", "KafkaTopic",
            "KafkaUser", "Cluster"} <= kinds
    for obj in rendered.objects:
        if (obj["apiVersion"], obj["kind"]) in crd_schemas():
            validate_custom(obj)
        else:
            validate_builtin(obj)


def test_the_crd_check_catches_mistakes(rendered_all: dict[str, Rendered]) -> None:
    """The custom-resource check is not vacuous: a wrong type, a wrong enum value and a
    misspelt field (which the API server would silently drop) all fail."""
    r = rendered_all["production"]
    cluster = r.one("Cluster", "mimetic-pg")
    for spoil in (lambda c: c["spec"].update(instances="2"),
                  lambda c: c["spec"]["managed"]["roles"][0].update(inRole=["x"]),
                  lambda c: c["spec"]["bootstrap"]["initdb"].update(postInitSQLApplication=[])):
        bad = yaml.safe_load(yaml.safe_dump(cluster))
        spoil(bad)
        with pytest.raises(AssertionError):
            validate_custom(bad)
    user = yaml.safe_load(yaml.safe_dump(r.one("KafkaUser", "mimetic-gateway")))
    user["spec"]["authorization"]["acls"][0]["operations"] = ["Writ"]
    with pytest.raises(AssertionError):
        validate_custom(user)


# --- generated files ------------------------------------------------------------------------


def test_generated_kafka_files_are_up_to_date() -> None:
    for path, text in generated_files().items():
        assert path.read_text() == text, f"{path.relative_to(REPO_ROOT)} is stale: run `mimetic deploy generate`"


def test_every_topic_has_a_kafka_topic(rendered: Rendered) -> None:
    s = settings_from_env_file()
    declared = {o["spec"]["topicName"]: o["spec"] for o in rendered.of_kind("KafkaTopic")}
    for spec in T.ALL_TOPICS:
        assert spec.name(s) in declared, spec.name(s)
        assert declared[spec.name(s)]["partitions"] == spec.partition_count(s)
        for key, value in spec.configs.items():
            assert declared[spec.name(s)]["config"][key] == value


def test_worker_changelog_topics_match_the_faust_app(tmp_path: Path) -> None:
    """The KafkaTopics for the worker's Faust tables are named as the app names them."""
    from processors.worker.app import make_app

    # the app reads its Kafka credentials when built: the pod's secret files are not here
    s = settings_from_env_file().model_copy(update={"home": tmp_path, "kafka_security_protocol": "PLAINTEXT"})
    app = make_app(s)  # only built, never started: no broker needed
    changelogs = {t.changelog_topic.get_topic_name() for t in app.tables.values()}
    assert {t.name for t in app.tables.values()} == set(WORKER_TABLES)
    declared = {d["spec"]["topicName"]: d["spec"] for d in kafka_topics(s)}
    for name in changelogs:
        assert declared[name]["config"]["cleanup.policy"] == "compact"
        assert declared[name]["partitions"] == s.topic_partitions


# --- Kafka ------------------------------------------------------------------------------------


def test_kafka_replication(rendered: Rendered) -> None:
    kafka = rendered.one("Kafka", KAFKA_CLUSTER)["spec"]["kafka"]
    assert kafka["config"]["default.replication.factor"] == 3
    assert kafka["config"]["min.insync.replicas"] == 2
    assert kafka["config"]["offsets.topic.replication.factor"] == 3
    assert kafka["authorization"]["type"] == "simple"
    assert all(listener["authentication"]["type"] == "scram-sha-512" and listener["tls"]
               for listener in kafka["listeners"])
    pools = {p["metadata"]["name"]: p["spec"] for p in rendered.of_kind("KafkaNodePool")}
    assert sum(p["replicas"] for p in pools.values() if "controller" in p["roles"]) == 3
    assert sum(p["replicas"] for p in pools.values() if "broker" in p["roles"]) >= 3
    for topic in rendered.of_kind("KafkaTopic"):
        assert topic["spec"]["replicas"] == 3, topic["metadata"]["name"]
        assert topic["spec"]["config"]["min.insync.replicas"] == "2", topic["metadata"]["name"]


def test_only_the_gateway_writes_raw_topics(rendered: Rendered) -> None:
    s = settings_from_env_file()
    raw = {spec.name(s) for spec in (T.RAW_FRAMES, T.TELEMETRY, T.SESSION_EVENTS)}
    writers: dict[str, set[str]] = {name: set() for name in raw}
    for user in rendered.of_kind("KafkaUser"):
        assert user["spec"]["authentication"]["type"] == "scram-sha-512"
        for acl in user["spec"]["authorization"]["acls"]:
            res = acl["resource"]
            if res["type"] != "topic" or not {"Write", "All"} & set(acl["operations"]):
                continue
            for topic in raw:
                if (res["patternType"] == "literal" and res["name"] in (topic, "*")) or (
                        res["patternType"] == "prefix" and topic.startswith(res["name"])):
                    writers[topic].add(user["metadata"]["name"])
    assert writers == {topic: {"mimetic-gateway"} for topic in raw}


def test_each_service_uses_its_own_kafka_user(rendered: Rendered) -> None:
    users = {u["metadata"]["name"] for u in rendered.of_kind("KafkaUser")}
    for obj, spec in pods(rendered):
        env = {e["name"]: e for c in spec["containers"] for e in c.get("env", [])}
        if "MIMETIC_KAFKA_SASL_USERNAME" not in env:
            continue
        user = env["MIMETIC_KAFKA_SASL_USERNAME"]["value"]
        assert user in users, obj["metadata"]["name"]
        sources = [s["secret"] for v in spec["volumes"] if "projected" in v for s in v["projected"]["sources"]]
        kafka_password = [s["name"] for s in sources if any(i["path"] == "kafka-password" for i in s.get("items", []))]
        assert kafka_password == [user], obj["metadata"]["name"]


# --- pods -------------------------------------------------------------------------------------


def test_pods_are_non_root_read_only_and_bounded(rendered: Rendered) -> None:
    for obj, spec in pods(rendered):
        name = obj["metadata"]["name"]
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] > 0, name
        assert spec.get("automountServiceAccountToken") is False, name
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][kind]), f"{name}: {kind}"


def test_long_running_containers_have_probes(rendered: Rendered) -> None:
    cfg = config(rendered)
    for obj in rendered.of_kind("Deployment"):
        name = obj["metadata"]["name"]
        for c in pod_spec(obj)["containers"]:
            assert "livenessProbe" in c and "readinessProbe" in c, name
            if name not in SERVICES:
                continue
            admin = {p["name"]: p["containerPort"] for p in c["ports"]}["admin"]
            assert admin == int(cfg[SERVICES[name][0]]), name
            assert c["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "admin"}, name
            assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}, name
    assert {o["metadata"]["name"] for o in rendered.of_kind("Deployment")} >= set(SERVICES)
    for setting, _user in SERVICES.values():  # probes come from the kubelet, not loopback
        assert cfg[setting.replace("_PORT", "_HOST")] == "0.0.0.0", setting


def test_worker_replicas_within_partitions(rendered: Rendered) -> None:
    partitions = int(config(rendered)["MIMETIC_TOPIC_PARTITIONS"])
    raw = [t for t in rendered.of_kind("KafkaTopic") if t["spec"]["topicName"].endswith(".raw.frames")]
    assert raw and raw[0]["spec"]["partitions"] == partitions
    worker = rendered.one("Deployment", "mimetic-worker")
    assert 1 <= worker["spec"]["replicas"] <= partitions
    pdb = rendered.one("PodDisruptionBudget", "mimetic-worker")
    assert pdb["spec"]["selector"]["matchLabels"] == worker["spec"]["selector"]["matchLabels"]


def test_gateway_is_exposed_with_tls_and_autoscaled(rendered: Rendered) -> None:
    ingress = rendered.one("Ingress", "mimetic-gateway")["spec"]
    hosts = {rule["host"] for rule in ingress["rules"]}
    assert hosts and hosts <= {h for tls in ingress["tls"] for h in tls["hosts"]}
    hpa = rendered.one("HorizontalPodAutoscaler", "mimetic-gateway")["spec"]
    assert hpa["scaleTargetRef"]["name"] == "mimetic-gateway" and 1 < hpa["minReplicas"] <= hpa["maxReplicas"]


# --- secrets ----------------------------------------------------------------------------------


def test_no_secret_in_the_repository() -> None:
    """No committed manifest holds a Secret or a literal secret value; secret generators read
    files only (and those files are ignored by git)."""
    for path in sorted(K8S_DIR.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            assert doc.get("kind") != "Secret", path
            for gen in doc.get("secretGenerator", []):
                assert "literals" not in gen and "envs" not in gen, f"{path}: {gen['name']}"
                assert all(f.split("=", 1)[-1].startswith("secrets/") for f in gen["files"]), path
    ignore = (K8S_DIR / "overlays" / ".gitignore").read_text()
    assert "*/secrets/" in ignore.splitlines()
    assert not any(line.strip().upper().startswith(("MIMETIC_PG_PASSWORD", "MIMETIC_KAFKA_SASL_PASSWORD="))
                   for line in CONFIG_ENV.read_text().splitlines())


def test_secrets_come_from_the_secret_files_and_are_referenced_not_inlined(rendered: Rendered) -> None:
    made = {}
    for secret in rendered.of_kind("Secret"):
        assert "stringData" not in secret
        for key, value in secret["data"].items():
            made[(secret["metadata"]["name"], key)] = base64.b64decode(value).decode()
    files = {p.read_text() for p in rendered.secret_dir.iterdir()}
    assert set(made.values()) <= files
    names = {name for name, _ in made}
    users = {u["metadata"]["name"] for u in rendered.of_kind("KafkaUser")}
    for obj, spec in pods(rendered):
        for c in spec["containers"]:
            for e in c.get("env", []):
                if any(word in e["name"] for word in ("PASSWORD", "SECRET", "TOKEN")):
                    assert "valueFrom" in e, f"{obj['metadata']['name']}: {e['name']} inlined"
                    ref = e["valueFrom"]["secretKeyRef"]
                    assert (ref["name"], ref["key"]) in made
            for src in c.get("envFrom", []):
                if "secretRef" in src:
                    assert src["secretRef"]["name"] in names | OPTIONAL_SECRETS
        for v in spec["volumes"]:
            for src in v.get("projected", {}).get("sources", []):
                ref = src["secret"]
                assert (ref["name"] in names | users | OPERATOR_SECRETS
                        or (ref["name"] in OPTIONAL_SECRETS and ref.get("optional"))), ref["name"]
    cluster = rendered.one("Cluster", "mimetic-pg")["spec"]
    refs = [cluster["bootstrap"]["initdb"]["secret"]["name"]] + [r["passwordSecret"]["name"]
                                                                 for r in cluster["managed"]["roles"]]
    for name in refs:
        secret = rendered.one("Secret", name)
        assert secret["type"] == "kubernetes.io/basic-auth" and {"username", "password"} <= set(secret["data"])


# --- database, network --------------------------------------------------------------------------


def test_postgres_cluster(rendered: Rendered) -> None:
    spec = rendered.one("Cluster", "mimetic-pg")["spec"]
    assert spec["instances"] == 2
    assert "timescaledb" in spec["postgresql"]["shared_preload_libraries"]
    assert spec["enableSuperuserAccess"] is False
    cfg = config(rendered)
    assert cfg["MIMETIC_PG_HOST"] == "mimetic-pg-rw" and cfg["MIMETIC_PG_USER"] == spec["bootstrap"]["initdb"]["owner"]
    logins = {r["name"] for r in spec["managed"]["roles"]}
    assert {cfg["MIMETIC_GATEWAY_PG_USER"], cfg["MIMETIC_SINK_PG_USER"], cfg["MIMETIC_NOTIFY_PG_USER"]} <= logins


def _selects(policy: dict[str, Any], labels: dict[str, str]) -> bool:
    sel = policy["spec"]["podSelector"]
    if any(labels.get(k) != v for k, v in sel.get("matchLabels", {}).items()):
        return False
    for expr in sel.get("matchExpressions", []):
        assert expr["operator"] == "In"
        if labels.get(expr["key"]) not in expr["values"]:
            return False
    return True


def test_network_policies(rendered: Rendered) -> None:
    policies = rendered.of_kind("NetworkPolicy")
    deny = [p for p in policies if p["spec"]["podSelector"] == {} and p["spec"]["policyTypes"] == ["Ingress"]
            and not p["spec"].get("ingress")]
    assert deny, "no default-deny ingress policy"
    for obj, spec in pods(rendered):
        labels = (obj["spec"]["jobTemplate"]["spec"]["template"] if obj["kind"] == "CronJob"
                  else obj["spec"]["template"])["metadata"]["labels"]
        egress = [p for p in policies if "Egress" in p["spec"]["policyTypes"] and _selects(p, labels)]
        assert egress, f"{obj['metadata']['name']}: egress not restricted"
        ports = {port["port"] for p in egress for rule in p["spec"]["egress"] for port in rule.get("ports", [])}
        name = obj["metadata"]["name"]
        if name in ("mimetic-worker", "mimetic-topics"):
            assert 5432 not in ports, name  # Kafka only
        if name in ("mimetic-migrate", "mimetic-rollup", "mimetic-retention"):
            assert 9093 not in ports, name  # the database only
    gateway_in = [p for p in policies if "Ingress" in p["spec"]["policyTypes"]
                  and _selects(p, {"app.kubernetes.io/name": "mimetic-gateway"}) and p["spec"].get("ingress")]
    assert [rule["from"][0]["namespaceSelector"] for p in gateway_in for rule in p["spec"]["ingress"]
            if any(port["port"] == 8088 for port in rule["ports"])]


def test_images_are_pinned(rendered: Rendered) -> None:
    for obj, spec in pods(rendered):
        for c in spec["containers"]:
            assert ":" in c["image"] and not c["image"].endswith(":latest"), obj["metadata"]["name"]


# --- Grafana ------------------------------------------------------------------------------------


def test_grafana_bundle_renders_the_configmaps_grafana_mounts(tmp_path: Path,
                                                               rendered_all: dict[str, Rendered]) -> None:
    from .conftest import kubectl_kustomize

    from mimetic.deploy_cli import grafana_bundle

    grafana_bundle(tmp_path / "grafana", ["C1", "C2"], "mimetic", 5432)
    maps = kubectl_kustomize(tmp_path / "grafana")
    for cm in maps:
        validate_builtin(cm)
        size = sum(len(v.encode()) for v in cm["data"].values())
        assert 0 < size < 1_000_000, cm["metadata"]["name"]  # a ConfigMap holds at most 1 MiB
    made = {cm["metadata"]["name"] for cm in maps}
    deployment = rendered_all["production"].one("Deployment", "mimetic-grafana")
    mounted = {v["configMap"]["name"] for v in pod_spec(deployment)["volumes"] if "configMap" in v}
    assert made == mounted
    sources = next(cm for cm in maps if cm["metadata"]["name"] == "mimetic-grafana-datasources")
    text = "".join(sources["data"].values())
    assert "mimetic-pg-ro:5432" in text and '"sslmode": "require"' in text
    env = {e["name"] for c in pod_spec(deployment)["containers"] for e in c.get("env", [])}
    assert {"MIMETIC_PG_ROLE_GRAFANA_RESEARCHER", "MIMETIC_PG_ROLE_GRAFANA_OPERATOR"} <= env


def test_deploy_commands_print_and_check_the_generated_files() -> None:
    from typer.testing import CliRunner

    from mimetic.cli import app
    from mimetic.deploy import TOPICS_FILE, USERS_FILE

    runner = CliRunner()
    assert runner.invoke(app, ["deploy", "topics"]).stdout == TOPICS_FILE.read_text()
    assert runner.invoke(app, ["deploy", "users"]).stdout == USERS_FILE.read_text()
    result = runner.invoke(app, ["deploy", "generate", "--check"])
    assert result.exit_code == 0 and "differs" not in result.stdout


def test_install_stages_are_complete(rendered: Rendered) -> None:
    """README "Deployment" applies `mimetic.io/stage=data`, then `=setup`, then everything:
    the data stage must hold what the Jobs need, the setup stage exactly the Jobs."""
    stage = {(o["kind"], o["metadata"]["name"]): o["metadata"].get("labels", {}).get("mimetic.io/stage")
             for o in rendered.objects}
    data_kinds = {"Namespace", "ConfigMap", "Secret", "NetworkPolicy", "ServiceAccount", "Kafka",
                  "KafkaNodePool", "KafkaTopic", "KafkaUser", "Cluster"}
    for (kind, name), value in stage.items():
        if kind in data_kinds:
            assert value == "data", f"{kind} {name}"
        elif kind == "Job":
            assert value == "setup", f"{kind} {name}"
        else:
            assert value is None, f"{kind} {name}"

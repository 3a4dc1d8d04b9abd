"""Deployment files generated from the project's own contracts, so they cannot drift.

- Strimzi `KafkaTopic`s from `mimetic.topics` (plus the worker's Faust-internal topics), with
  replication 3 and `min.insync.replicas` 2;
- Strimzi `KafkaUser`s, one per service, SCRAM-SHA-512, with ACLs from `access()` below: only
  the gateway may write the raw device topics;
- the secret files of the overlays and of the compose file (random passwords, written only
  where missing, never committed).

Settings come from the deployment's own `deploy/k8s/base/config.env` (the ConfigMap the pods
read), so the topics' partition count is the one the workers are sized against. The YAML
is JSON (a subset of YAML) with sorted keys, as `mimetic dashboards build` writes it:
deterministic, and no YAML library at run time.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mimetic import topics as T
from mimetic.config import REPO_ROOT, Settings

K8S_DIR = REPO_ROOT / "deploy" / "k8s"
CONFIG_ENV = K8S_DIR / "base" / "config.env"
TOPICS_FILE = K8S_DIR / "base" / "kafka" / "topics.yaml"
USERS_FILE = K8S_DIR / "base" / "kafka" / "users.yaml"

STRIMZI_API = "kafka.strimzi.io/v1"
KAFKA_CLUSTER = "mimetic-kafka"  # the Kafka resource's name (deploy/k8s/base/kafka/kafka.yaml)
TOPIC_REPLICAS = 3
MIN_INSYNC_REPLICAS = 2
#: the worker's Faust tables (processors/worker/app.py); each has a changelog topic
WORKER_TABLES = ("device-state",)
#: the notifier's consumer group where the settings have no MIMETIC_NOTIFY_GROUP yet
NOTIFY_GROUP = "mimetic-notify"

RAW = (T.RAW_FRAMES, T.TELEMETRY, T.SESSION_EVENTS)
DERIVED = (T.FEATURES, T.BALANCE, T.ACTIVATIONS, T.SESSIONS, T.DERIVED_TELEMETRY, T.ALERTS)

#: the secret files an overlay's secretGenerator reads (under overlays/<name>/secrets/); each
#: value is (kind, content): "user" files hold a login name, "password" files a random secret
SECRET_FILES: dict[str, tuple[str, str]] = {
    "pg-owner-username": ("user", "mimetic"),
    "pg-owner-password": ("password", ""),
    "pg-gw-username": ("user", "mimetic_gw"),
    "pg-gw-password": ("password", ""),
    "pg-sink-username": ("user", "mimetic_sink"),
    "pg-sink-password": ("password", ""),
    "pg-notify-username": ("user", "mimetic_notify"),
    "pg-notify-password": ("password", ""),
    "pg-grafana-researcher-username": ("user", "grafana_researcher"),
    "pg-grafana-researcher-password": ("password", ""),
    "pg-grafana-operator-username": ("user", "grafana_operator"),
    "pg-grafana-operator-password": ("password", ""),
    "grafana-admin-username": ("user", "admin"),
    "grafana-admin-password": ("password", ""),
    "smtp-password": ("password", ""),
}
#: the compose file's secrets (deploy/compose/compose.yaml), all passwords
COMPOSE_SECRET_FILES = ("pg-admin-password", "pg-owner-password", "pg-gw-password", "pg-sink-password",
                        "pg-notify-password", "smtp-password")


@dataclass(frozen=True)
class Access:
    """One service's Kafka principal: what it reads, writes and which groups it consumes in."""

    user: str
    reads: tuple[T.TopicSpec, ...] = ()
    writes: tuple[T.TopicSpec, ...] = ()
    groups: tuple[str, ...] = ()
    #: a topic-name prefix the service owns outright (Faust's changelog and leader topics)
    owns_prefix: str | None = None
    #: may describe and create the topics of `mimetic.topics` (the topics Job)
    admin: bool = False


def access(s: Settings) -> tuple[Access, ...]:
    """Every service's Kafka principal (KafkaUser name = SASL user name)."""
    ticks = (T.WORKER_TICKS,)
    return (
        Access("mimetic-gateway", writes=RAW),
        Access("mimetic-worker", reads=RAW + ticks, writes=DERIVED + (T.DEAD_LETTERS,) + ticks,
               groups=(s.worker_id,), owns_prefix=f"{s.worker_id}-"),
        Access("mimetic-sink", reads=DERIVED, writes=(T.DEAD_LETTERS,), groups=(s.sink_group,)),
        Access("mimetic-notify", reads=(T.ALERTS,), groups=(getattr(s, "notify_group", NOTIFY_GROUP),)),
        Access("mimetic-admin", admin=True),
    )


def settings_from_env_file(path: Path = CONFIG_ENV) -> Settings:
    """Settings as a pod reading `path` (KEY=VALUE lines) would see them, ignoring this
    process's own environment."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        if key.startswith("MIMETIC_"):
            values[key[len("MIMETIC_"):].lower()] = value
    known = {k: v for k, v in values.items() if k in Settings.model_fields}
    return _FileOnlySettings(**known)


class _FileOnlySettings(Settings):
    """Settings from the keyword arguments alone (no MIMETIC_* variables of this process)."""

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, **_others):  # type: ignore[override]
        return (init_settings,)


def _labels() -> dict[str, str]:
    """The operator's cluster label, and the install stage (README "Deployment")."""
    return {"strimzi.io/cluster": KAFKA_CLUSTER, "mimetic.io/stage": "data"}


def _k8s_name(topic: str) -> str:
    """A topic name as a Kubernetes object name (lowercase, digits, '-' and '.')."""
    name = topic.lower().replace("_", "").replace(".", "-")
    return "-".join(part for part in name.split("-") if part)


def _doc(obj: dict[str, Any]) -> str:
    return "---\n" + json.dumps(obj, indent=2, sort_keys=True) + "\n"


def _header(what: str) -> str:
    return (f"# {what}, generated by `mimetic deploy generate` from mimetic/topics.py,\n"
            "# mimetic/deploy.py and deploy/k8s/base/config.env: do not edit (JSON is YAML).\n")


def _topic(name: str, partitions: int, config: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": STRIMZI_API, "kind": "KafkaTopic",
        "metadata": {"name": _k8s_name(name), "labels": _labels()},
        "spec": {"topicName": name, "partitions": partitions, "replicas": TOPIC_REPLICAS,
                 "config": {"min.insync.replicas": str(MIN_INSYNC_REPLICAS), **config}},
    }


def kafka_topics(s: Settings) -> list[dict[str, Any]]:
    """A KafkaTopic for every topic of mimetic/topics.py and every Faust topic of the worker."""
    docs = [_topic(spec.name(s), spec.partition_count(s), dict(spec.configs)) for spec in T.ALL_TOPICS]
    for table in WORKER_TABLES:  # Faust's changelog: compacted, partitioned like the input
        docs.append(_topic(f"{s.worker_id}-{table}-changelog", s.topic_partitions,
                           {"cleanup.policy": "compact"}))
    docs.append(_topic(f"{s.worker_id}-__assignor-__leader", 1, {}))
    return docs


def _acl(kind: str, name: str, pattern: str, operations: list[str]) -> dict[str, Any]:
    return {"resource": {"type": kind, "name": name, "patternType": pattern},
            "operations": operations, "host": "*"}


def acls_of(a: Access, s: Settings) -> list[dict[str, Any]]:
    """The ACLs (Strimzi's `simple` form) that give principal `a` what it needs and nothing more;
    the local secure stack grants the same (mimetic/stack/kafka_acls.py)."""
    acls: list[dict[str, Any]] = []
    read = {spec.name(s) for spec in a.reads}
    write = {spec.name(s) for spec in a.writes}
    for topic in sorted(read | write):
        ops = ["Describe"] + (["Read"] if topic in read else []) + (["Write"] if topic in write else [])
        acls.append(_acl("topic", topic, "literal", ops))
    for group in a.groups:
        acls.append(_acl("group", group, "literal", ["Describe", "Read"]))
    if a.owns_prefix:
        acls.append(_acl("topic", a.owns_prefix, "prefix",
                         ["Create", "Describe", "DescribeConfigs", "Read", "Write"]))
    if a.admin:
        acls.append(_acl("topic", f"{s.topic_prefix}.", "prefix", ["Create", "Describe", "DescribeConfigs"]))
        acls.append(_acl("cluster", "kafka-cluster", "literal", ["Describe"]))
    return acls


def kafka_users(s: Settings) -> list[dict[str, Any]]:
    """A SCRAM-SHA-512 KafkaUser per service with the ACLs of `access()`."""
    docs = []
    for a in access(s):
        acls = acls_of(a, s)
        docs.append({
            "apiVersion": STRIMZI_API, "kind": "KafkaUser",
            "metadata": {"name": a.user, "labels": _labels()},
            "spec": {"authentication": {"type": "scram-sha-512"},
                     "authorization": {"type": "simple", "acls": acls}},
        })
    return docs


def topics_yaml(s: Settings) -> str:
    return _header("KafkaTopics") + "".join(_doc(d) for d in kafka_topics(s))


def users_yaml(s: Settings) -> str:
    return _header("KafkaUsers") + "".join(_doc(d) for d in kafka_users(s))


def generated_files(s: Settings | None = None) -> dict[Path, str]:
    """Every generated file of deploy/ with the content it must have."""
    s = s or settings_from_env_file()
    return {TOPICS_FILE: topics_yaml(s), USERS_FILE: users_yaml(s)}


def write_secret_files(directory: Path, compose: bool = False) -> list[Path]:
    """Create the missing secret files of an overlay (or, with `compose`, of the compose file);
    existing ones are kept, so running it again never rotates a password. The folder is 0700.
    Files are 0600, except for compose (0644): Compose bind-mounts them with the host's owner
    and mode, and the containers' users (10001, postgres) must read them; the 0700 folder
    keeps other host users out. Returns the files created."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    wanted = {name: ("password", "") for name in COMPOSE_SECRET_FILES} if compose else SECRET_FILES
    made = []
    for name, (kind, content) in wanted.items():
        path = directory / name
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        with os.fdopen(fd, "w") as fh:
            # no trailing newline: secretGenerator copies the bytes into the Secret as they are
            fh.write(content if kind == "user" else secrets.token_urlsafe(32))
        if compose:
            os.chmod(path, 0o644)
        made.append(path)
    return made

"""Create the topics of `mimetic.topics` (idempotent), delete a run's topics and read a group's committed
offsets, with kafka-python's admin client."""

from __future__ import annotations

import time
from collections.abc import Iterable

from kafka import KafkaAdminClient, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from mimetic.config import Settings
from mimetic.kafka_security import client_kwargs
from mimetic.topics import ALL_TOPICS, TopicSpec


def ensure_topics(s: Settings, specs: tuple[TopicSpec, ...] = ALL_TOPICS) -> list[str]:
    """Create missing topics; returns one line per topic saying what happened."""
    admin = KafkaAdminClient(bootstrap_servers=s.bootstrap_servers(), client_id="mimetic-admin",
                             request_timeout_ms=15000, **client_kwargs(s))
    try:
        existing = set(admin.list_topics())
        lines: list[str] = []
        for spec in specs:
            name = spec.name(s)
            if name in existing:
                lines.append(f"{name}: exists")
                continue
            try:
                admin.create_topics([NewTopic(name, spec.partition_count(s), spec.replicas(s),
                                              topic_configs=spec.topic_configs(s))])
                lines.append(f"{name}: created ({spec.partition_count(s)} partitions, "
                             f"{spec.replicas(s)} replicas)")
            except TopicAlreadyExistsError:
                lines.append(f"{name}: exists")
        created = [spec.name(s) for spec, line in zip(specs, lines) if "created" in line]
        if created:
            _wait_for_leaders(admin, created)
        return lines
    finally:
        admin.close()


def _wait_for_leaders(admin: KafkaAdminClient, topics: list[str], timeout_s: float = 30.0) -> None:
    """Return once every partition of `topics` has a leader (a client that asks for metadata right
    after the creation would otherwise see no partitions); give up quietly after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        described = admin.describe_topics(topics)
        if all(t.get("error_code", 0) == 0 and t["partitions"]
               and all(p.get("leader_id", -1) >= 0 for p in t["partitions"]) for t in described):
            return
        time.sleep(0.2)


def delete_topics(s: Settings, *prefixes: str) -> list[str]:
    """Delete every topic whose name starts with one of `prefixes` (a test's or a demo's own topics,
    and the worker group's changelog); returns the names deleted. Each partition costs the broker heap."""
    admin = KafkaAdminClient(bootstrap_servers=s.bootstrap_servers(), client_id="mimetic-admin",
                             request_timeout_ms=15000, **client_kwargs(s))
    try:
        names = sorted(t for t in admin.list_topics() if prefixes and t.startswith(prefixes))
        if names:
            admin.delete_topics(names)
        return names
    finally:
        admin.close()


def committed_offsets(s: Settings, group: str, partitions: Iterable[tuple[str, int]] | None = None
                      ) -> dict[TopicPartition, int]:
    """(topic, partition) -> offset committed by consumer group `group` (all its partitions when
    `partitions` is None); partitions without a commit are left out."""
    admin = KafkaAdminClient(bootstrap_servers=s.bootstrap_servers(), client_id="mimetic-admin",
                             request_timeout_ms=15000, **client_kwargs(s))
    try:
        wanted = None if partitions is None else [TopicPartition(t, p) for t, p in partitions]
        offsets = admin.list_group_offsets({group: wanted}).get(group, {})
    finally:
        admin.close()
    return {tp: om.offset for tp, om in offsets.items() if om.offset >= 0}

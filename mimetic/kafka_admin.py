"""Create the topics of `mimetic.topics` (idempotent) with kafka-python's admin client."""

from __future__ import annotations

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from mimetic.config import Settings
from mimetic.topics import ALL_TOPICS, TopicSpec


def ensure_topics(s: Settings, specs: tuple[TopicSpec, ...] = ALL_TOPICS) -> list[str]:
    """Create missing topics; returns one line per topic saying what happened."""
    admin = KafkaAdminClient(bootstrap_servers=s.kafka_bootstrap, client_id="mimetic-admin",
                             request_timeout_ms=15000)
    try:
        existing = set(admin.list_topics())
        lines: list[str] = []
        for spec in specs:
            name = spec.name(s)
            if name in existing:
                lines.append(f"{name}: exists")
                continue
            try:
                admin.create_topics(
                    [NewTopic(name, spec.partition_count(s), s.topic_replication, topic_configs=spec.configs)]
                )
                lines.append(f"{name}: created ({spec.partition_count(s)} partitions)")
            except TopicAlreadyExistsError:
                lines.append(f"{name}: exists")
        return lines
    finally:
        admin.close()

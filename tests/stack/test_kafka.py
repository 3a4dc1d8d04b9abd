"""Kafka round trips against the real local broker: consumer groups and committed offsets."""

from __future__ import annotations

import uuid

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from mimetic.config import Settings
from mimetic.topics import ALL_TOPICS, RAW_FRAMES

pytestmark = pytest.mark.stack


def _produce(s: Settings, topic: str, values: list[bytes], key: bytes) -> None:
    producer = KafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all", linger_ms=5)
    try:
        for v in values:
            producer.send(topic, key=key, value=v)
        producer.flush(timeout=30)
    finally:
        producer.close()


def _consume(s: Settings, topic: str, group: str, n_max: int) -> list[bytes]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=s.kafka_bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=8000,
        max_poll_records=n_max,
    )
    got: list[bytes] = []
    try:
        for msg in consumer:
            got.append(msg.value)
            if len(got) >= n_max:
                break
        consumer.commit()
    finally:
        consumer.close()
    return got


def test_topics_exist_with_their_partition_counts(settings: Settings) -> None:
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    try:
        for spec in ALL_TOPICS:
            parts = consumer.partitions_for_topic(spec.name(settings))
            assert parts is not None, spec.name(settings)
            assert len(parts) == spec.partition_count(settings)
    finally:
        consumer.close()


def test_round_trip_with_consumer_group_resumes_after_committed_offset(settings: Settings) -> None:
    topic = RAW_FRAMES.name(settings)
    key = f"dev-{uuid.uuid4().hex[:6]}".encode()  # one key: one partition, strict order
    group = f"g-{uuid.uuid4().hex[:8]}"
    first = [f"a{i}".encode() for i in range(50)]
    _produce(settings, topic, first, key)

    got = _consume(settings, topic, group, n_max=10_000)
    assert [v for v in got if v in set(first)] == first  # all of ours, in order

    second = [f"b{i}".encode() for i in range(20)]
    _produce(settings, topic, second, key)
    # same group: starts at its committed offset, so only the new messages arrive
    got2 = _consume(settings, topic, group, n_max=10_000)
    assert got2 == second

    # the committed offset is visible to a fresh consumer of the group
    probe = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=group,
                          enable_auto_commit=False)
    try:
        parts = probe.partitions_for_topic(topic)
        committed = {p: probe.committed(TopicPartition(topic, p)) for p in parts}
        ends = probe.end_offsets([TopicPartition(topic, p) for p in parts])
    finally:
        probe.close()
    for tp, end in ends.items():
        if committed[tp.partition] is not None:
            assert committed[tp.partition] == end

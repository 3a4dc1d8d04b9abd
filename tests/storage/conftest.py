"""Storage fixtures: per-test topics and consumer group."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from mimetic import topics
from mimetic.config import Settings
from mimetic.kafka_admin import ensure_topics
from processors.sink import SINK_TOPICS


@pytest.fixture
def sink_settings(settings: Settings) -> Iterator[Settings]:
    """Own topics (2 partitions) and consumer group for one test."""
    tag = uuid.uuid4().hex[:6]
    s = settings.model_copy(update={
        "topic_prefix": f"{settings.topic_prefix}-{tag}", "topic_partitions": 2,
        "sink_group": f"sink-{tag}", "sink_linger_ms": 100, "sink_batch_size": 2000,
        "sink_retry_max_s": 2.0,
    })
    ensure_topics(s, (*SINK_TOPICS, topics.DEAD_LETTERS))
    yield s

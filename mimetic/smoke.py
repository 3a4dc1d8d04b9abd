"""A quick end-to-end check of the running stack: Kafka round trip and a hypertable query."""

from __future__ import annotations

import time
import uuid

from mimetic.config import Settings


def smoke_check(s: Settings) -> list[str]:
    """Round-trip one message through Kafka and one row through a hypertable."""
    import psycopg
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    from mimetic.kafka_security import client_kwargs
    from mimetic.topics import DEAD_LETTERS

    lines: list[str] = []
    topic = DEAD_LETTERS.name(s)
    marker = f"smoke-{uuid.uuid4()}".encode()
    t0 = time.monotonic()
    producer = KafkaProducer(bootstrap_servers=s.bootstrap_servers(), acks="all", **client_kwargs(s))
    md = producer.send(topic, key=b"smoke", value=marker, headers=[("reason", b"smoke-check")]).get(timeout=30)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=s.bootstrap_servers(), enable_auto_commit=False, **client_kwargs(s),
                             consumer_timeout_ms=10000)
    tp = TopicPartition(topic, md.partition)
    consumer.assign([tp])
    consumer.seek(tp, md.offset)
    got = next(iter(consumer), None)
    consumer.close()
    ok = got is not None and got.value == marker
    lines.append(f"kafka round trip via {topic}[{md.partition}]@{md.offset}: "
                 f"{'ok' if ok else 'FAILED'} in {1000 * (time.monotonic() - t0):.0f} ms")
    with psycopg.connect(s.db_dsn()) as conn:
        row = conn.execute(
            "select count(*), (select extversion from pg_extension where extname='timescaledb') "
            "from timescaledb_information.hypertables"
        ).fetchone()
        lines.append(f"timescaledb {row[1]}: {row[0]} hypertables")
    return lines

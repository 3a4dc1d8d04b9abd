"""`mimetic stack` lifecycle on a private stack: up, status, down (nothing left), up again (data kept)."""

from __future__ import annotations

import os
import time

import psycopg
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from mimetic import stack
from mimetic.config import Settings
from mimetic.db.migrate import migrate
from mimetic.stack import kafka as kafka_stack
from mimetic.stack import postgres as pg_stack
from mimetic.stack.procs import pid_alive, port_open

pytestmark = [pytest.mark.stack, pytest.mark.slow]


def _ports(s: Settings) -> list[tuple[str, int]]:
    host, kport = kafka_stack.host_port(s)
    return [(host, kport), (host, s.kafka_controller_port), (s.pg_host, s.pg_port)]


def test_stack_up_down_up_keeps_data_and_leaves_nothing_running(private_stack: Settings) -> None:
    s = private_stack
    list(stack.up(s))
    status = {r["service"]: r for r in stack.status(s)}
    assert status["kafka"]["healthy"] and status["kafka"]["version"].startswith("4.")
    assert status["postgres"]["healthy"] and status["postgres"]["timescaledb"]

    migrate(s.db_dsn())
    with psycopg.connect(s.db_dsn(), autocommit=True) as conn:
        conn.execute("insert into clinic (clinic_id, name) values ('c-life', 'Lifecycle clinic')")
    producer = KafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all")
    admin_topic = "lifecycle.check"
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=s.kafka_bootstrap)
    admin.create_topics([NewTopic(admin_topic, 1, 1)])
    admin.close()
    producer.send(admin_topic, b"kept").get(timeout=30)
    producer.close()

    pids = [status["kafka"]["pid"], status["postgres"]["pid"]]
    list(stack.down(s))
    for pid in pids:
        assert not pid_alive(pid), f"pid {pid} still alive after down"
    for host, port in _ports(s):
        assert not port_open(host, port), f"{host}:{port} still listening after down"
    assert not any(r["healthy"] for r in stack.status(s))

    t0 = time.monotonic()
    list(stack.up(s))
    restart_s = time.monotonic() - t0
    with psycopg.connect(s.db_dsn(), autocommit=True) as conn:
        assert conn.execute("select name from clinic where clinic_id = 'c-life'").fetchone() == ("Lifecycle clinic",)
    consumer = KafkaConsumer(bootstrap_servers=s.kafka_bootstrap, consumer_timeout_ms=10000)
    tp = TopicPartition(admin_topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    values = [m.value for m in consumer]
    consumer.close()
    assert values == [b"kept"]
    # a second `up` reuses everything: no download, no build, no initdb
    assert (s.cache_dir / f"kafka-{s.kafka_version}" / "libs" / ".complete").exists()
    assert restart_s < 120  # generous: a restart only, never a re-download
    t1 = time.monotonic()
    msgs = list(stack.up(s))
    assert any("already running" in m for m in msgs)
    assert time.monotonic() - t1 < 30


def test_stack_reset_wipes_data(private_stack: Settings) -> None:
    s = private_stack
    list(stack.up(s))
    migrate(s.db_dsn())
    list(stack.reset(s))
    assert not (s.data_dir / "pg").exists() and not (s.data_dir / "kafka").exists()
    assert not os.path.exists(pg_stack.PgPaths.of(s).data / "postmaster.pid")

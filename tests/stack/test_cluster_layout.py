"""The local cluster's layout rules, without starting anything: node ports, bootstrap lists,
replication and min.insync.replicas from MIMETIC_KAFKA_BROKERS."""

from __future__ import annotations

import pytest

from mimetic.config import KAFKA_NODE_PORT_STEP, Settings
from mimetic.stack.kafka_layout import KafkaPaths, nodes
from mimetic.stack.procs import StackError
from mimetic.topics import RAW_FRAMES


def _s(**kw) -> Settings:
    return Settings(kafka_bootstrap="127.0.0.1:42092", kafka_controller_port=42093, **kw)


def test_one_broker_keeps_the_single_node_stack() -> None:
    s = _s()
    assert s.bootstrap_servers() == ["127.0.0.1:42092"]
    assert s.replication_factor() == 1 and s.min_insync_replicas() == 1
    assert RAW_FRAMES.topic_configs(s)["min.insync.replicas"] == "1"
    [node] = nodes(s)
    assert (node.node_id, node.port, node.controller_port) == (1, 42092, 42093)
    assert KafkaPaths.of(s).data == s.data_dir / "kafka"


def test_three_brokers_derive_ports_dirs_and_replication() -> None:
    s = _s(kafka_brokers=3)
    step = KAFKA_NODE_PORT_STEP
    assert s.bootstrap_servers() == [f"127.0.0.1:{42092 + step * i}" for i in range(3)]
    assert [(n.port, n.controller_port) for n in nodes(s)] == [
        (42092 + step * i, 42093 + step * i) for i in range(3)]
    assert len({KafkaPaths.of(s, i).data for i in (1, 2, 3)}) == 3
    assert s.replication_factor() == 3 and s.min_insync_replicas() == 2
    assert RAW_FRAMES.topic_configs(s) == {**RAW_FRAMES.configs, "min.insync.replicas": "2"}
    # more brokers than 3: still 3 replicas
    assert _s(kafka_brokers=5).replication_factor() == 3
    # two brokers: 2 replicas, a write needs only one (else one loss stops every producer)
    assert (_s(kafka_brokers=2).replication_factor(), _s(kafka_brokers=2).min_insync_replicas()) == (2, 1)


def test_an_explicit_bootstrap_list_or_replication_wins() -> None:
    s = Settings(kafka_bootstrap="k1:9092,k2:9092", kafka_brokers=3, topic_replication=2)
    assert s.bootstrap_servers() == ["k1:9092", "k2:9092"]
    assert s.replication_factor() == 2 and s.min_insync_replicas() == 1


def test_colliding_node_ports_are_refused() -> None:
    s = Settings(kafka_bootstrap="127.0.0.1:42092", kafka_controller_port=42092 + KAFKA_NODE_PORT_STEP,
                 kafka_brokers=3)
    with pytest.raises(StackError, match="collide"):
        nodes(s)

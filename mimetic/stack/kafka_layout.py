"""Where the local Kafka cluster's nodes live: ports, directories, the formatted node count.

Node i (1-based) listens on the bootstrap and controller ports plus
KAFKA_NODE_PORT_STEP * (i - 1); node 1 keeps the paths of the single-node stack.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mimetic.config import KAFKA_MTLS_PORT_OFFSET, KAFKA_NODE_PORT_STEP, Settings
from mimetic.stack.procs import StackError


@dataclass(frozen=True)
class KafkaPaths:
    libs: Path
    data: Path
    config: Path
    log4j: Path
    pid_file: Path
    log_file: Path

    @classmethod
    def of(cls, s: Settings, node: int = 1) -> "KafkaPaths":
        name = "kafka" if node == 1 else f"kafka-{node}"
        return cls(
            libs=s.cache_dir / f"kafka-{s.kafka_version}" / "libs",
            data=s.data_dir / name,
            config=s.run_dir / name / "server.properties",
            log4j=s.run_dir / name / "log4j2.yaml",
            pid_file=s.run_dir / name / "kafka.pid",
            log_file=s.run_dir / name / "server.log",
        )


@dataclass(frozen=True)
class Node:
    """One KRaft node of the local cluster: its id and loopback ports."""

    node_id: int
    host: str
    port: int               # PLAINTEXT listener, or SASL_SSL in the secure mode (+ KAFKA_MTLS_PORT_OFFSET: mTLS)
    controller_port: int    # KRaft quorum

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def host_port(s: Settings) -> tuple[str, int]:
    host, port = s.kafka_bootstrap.split(",")[0].rsplit(":", 1)
    return host, int(port)


def nodes(s: Settings, n: int | None = None) -> list[Node]:
    """The cluster's nodes (MIMETIC_KAFKA_BROKERS unless `n`), their ports checked for collisions."""
    host, port = host_port(s)
    count = s.kafka_brokers if n is None else n
    out = []
    for i in range(1, count + 1):
        step = KAFKA_NODE_PORT_STEP * (i - 1)
        out.append(Node(i, host, port + step, s.kafka_controller_port + step))
    ports = [p for nd in out for p in (nd.port, nd.controller_port)]
    if s.kafka_stack_security == "sasl_ssl":   # each node's mutual-TLS listener
        ports += [nd.port + KAFKA_MTLS_PORT_OFFSET for nd in out]
    if len(set(ports)) != len(ports):
        raise StackError(f"kafka: node ports collide ({sorted(ports)}): choose MIMETIC_KAFKA_CONTROLLER_PORT "
                         f"so that it differs from the bootstrap port by other than a multiple of "
                         f"{KAFKA_NODE_PORT_STEP} below {KAFKA_NODE_PORT_STEP * count}")
    return out


def cluster_file(s: Settings) -> Path:
    """Records how many nodes the stack's storage was formatted for."""
    return s.data_dir / "kafka-cluster.properties"


def formatted_nodes(s: Settings) -> int | None:
    """Nodes the storage was formatted for; None if never formatted (a single-node stack from
    before clusters had no record: 1)."""
    try:
        for line in cluster_file(s).read_text().splitlines():
            if line.startswith("nodes="):
                return int(line.split("=", 1)[1])
    except (OSError, ValueError):
        pass
    return 1 if (KafkaPaths.of(s).data / "meta.properties").exists() else None


def formatted_security(s: Settings) -> str | None:
    """The MIMETIC_KAFKA_STACK_SECURITY the storage was formatted with; None if never formatted
    (storage formatted before the setting existed: plaintext)."""
    try:
        for line in cluster_file(s).read_text().splitlines():
            if line.startswith("security="):
                return line.split("=", 1)[1].strip()
    except OSError:
        pass
    return "plaintext" if formatted_nodes(s) is not None else None


def cluster_id(s: Settings) -> str | None:
    """The id node 1 was formatted with (every node shares it)."""
    try:
        for line in (KafkaPaths.of(s).data / "meta.properties").read_text().splitlines():
            if line.startswith("cluster.id="):
                return line.split("=", 1)[1].strip()
    except OSError:
        pass
    return None


def all_nodes(s: Settings) -> list[int]:
    """Every node id this home has a directory for (whatever MIMETIC_KAFKA_BROKERS says now)."""
    ids = {1}
    for d in [*s.run_dir.glob("kafka-*"), *s.data_dir.glob("kafka-*")]:
        suffix = d.name.removeprefix("kafka-")
        if d.is_dir() and suffix.isdigit():
            ids.add(int(suffix))
    return sorted(ids)

"""Kafka topics: the single source of truth for names, partitions and configs.

Every topic that carries device data is keyed by device id, so per-device order
and per-channel filter state stay on one partition (and one worker).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kafka.partitioner.default import murmur2

from mimetic.config import Settings, get_settings

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    """One topic: its suffix (the prefix comes from settings), role and Kafka configs."""

    suffix: str
    purpose: str
    device_keyed: bool = True
    partitions: int | None = None  # None: settings.topic_partitions
    configs: dict[str, str] = field(default_factory=dict)

    def name(self, settings: Settings | None = None) -> str:
        s = settings or get_settings()
        return f"{s.topic_prefix}.{self.suffix}"

    def partition_count(self, settings: Settings | None = None) -> int:
        s = settings or get_settings()
        return self.partitions if self.partitions is not None else s.topic_partitions

    def replicas(self, settings: Settings | None = None) -> int:
        """Replication factor: min(3, brokers) unless MIMETIC_TOPIC_REPLICATION says otherwise."""
        return (settings or get_settings()).replication_factor()

    def topic_configs(self, settings: Settings | None = None) -> dict[str, str]:
        """The topic's own configs plus min.insync.replicas (2 with 3 replicas), so an acks=all
        write is acknowledged only once a second broker has it."""
        s = settings or get_settings()
        return {**self.configs, "min.insync.replicas": str(s.min_insync_replicas())}


_RAW_RETENTION = {"retention.ms": str(7 * DAY_MS), "compression.type": "producer"}
_DERIVED_RETENTION = {"retention.ms": str(7 * DAY_MS)}

RAW_FRAMES = TopicSpec("raw.frames", "sEMG frames from devices (binary wire format)", configs=_RAW_RETENTION)
TELEMETRY = TopicSpec("raw.telemetry", "device telemetry (JSON)", configs=_RAW_RETENTION)
SESSION_EVENTS = TopicSpec("raw.events", "session lifecycle, task markers, patient reports (JSON)", configs=_RAW_RETENTION)
FEATURES = TopicSpec("derived.features", "envelopes and signal quality per channel and frame", configs=_DERIVED_RETENTION)
BALANCE = TopicSpec("derived.balance", "left/right asymmetry per muscle pair", configs=_DERIVED_RETENTION)
ACTIVATIONS = TopicSpec("derived.activations", "closed muscle activations (onset/offset)", configs=_DERIVED_RETENTION)
SESSIONS = TopicSpec("derived.sessions", "per-session summaries", configs=_DERIVED_RETENTION)
DERIVED_TELEMETRY = TopicSpec(
    "derived.telemetry", "validated telemetry for storage (processors.records.TelemetryRecord)",
    configs=_DERIVED_RETENTION,
)
ALERTS = TopicSpec("derived.alerts", "device-fault and safety alerts (raise/clear)", configs=_DERIVED_RETENTION)
DEAD_LETTERS = TopicSpec(
    "dead.letters",
    "rejected records with the reason, for inspection and replay",
    configs={"retention.ms": str(30 * DAY_MS)},
)
WORKER_TICKS = TopicSpec(
    "worker.ticks",
    "liveness ticks the worker sends itself (a timer cannot update stream tables)",
    configs={"retention.ms": str(DAY_MS)},
)

ALL_TOPICS: tuple[TopicSpec, ...] = (
    RAW_FRAMES,
    TELEMETRY,
    SESSION_EVENTS,
    FEATURES,
    BALANCE,
    ACTIVATIONS,
    SESSIONS,
    ALERTS,
    DERIVED_TELEMETRY,
    DEAD_LETTERS,
    WORKER_TICKS,
)


def partition_of(key: bytes, n_partitions: int) -> int:
    """The partition of a device-keyed record: Kafka's default partitioner (murmur2 of the key), as
    the gateway's and every other producer's."""
    return (murmur2(key) & 0x7FFFFFFF) % n_partitions

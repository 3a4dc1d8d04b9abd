"""Bad records reach the dead-letter topic with a reason; the worker keeps processing good ones."""

from __future__ import annotations

import time

import pytest
from kafka import KafkaConsumer, KafkaProducer

from ingest import wire
from ingest.simulator import Simulation
from mimetic.config import Settings
from mimetic.topics import DEAD_LETTERS, RAW_FRAMES, SESSION_EVENTS, TELEMETRY



pytestmark = [pytest.mark.stack, pytest.mark.slow]


def test_malformed_records_are_dead_lettered_and_processing_continues(pipeline_settings: Settings,
                                                                      services) -> None:
    s = pipeline_settings
    sim = Simulation(patients=1, sessions=1, duration_s=20, seed=3, fault_prob=0.0, device_prefix="e2e-dlq")
    device = sim.device_ids[0]
    frames = [r.item for r in sim.device_records(0) if r.kind == wire.KIND_FRAME][:60]
    good = wire.encode_frame(frames[0])
    producer = KafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all")
    key = device.encode()
    bad = [
        (RAW_FRAMES, b"\x00garbage", "bad_magic"),
        (RAW_FRAMES, good[:40], "truncated"),
        (RAW_FRAMES, good, "device_id_mismatch"),  # sent under another device's key below
        (TELEMETRY, b'{"battery_pct": "full"', "bad_json"),
        (SESSION_EVENTS, b'{"type": "session_start", "seq": 1}', "invalid_event"),
    ]
    for spec, value, _why in bad:
        k = b"someone-else" if _why == "device_id_mismatch" else key
        kind = {RAW_FRAMES.suffix: b"frame", TELEMETRY.suffix: b"telemetry", SESSION_EVENTS.suffix: b"event"}
        producer.send(spec.name(s), key=k, value=value, headers=[("kind", kind[spec.suffix])])
    for f in frames:
        k2, v2, h2 = wire.encode_record(f, source="test")
        producer.send(RAW_FRAMES.name(s), key=k2, value=v2, headers=h2)
    producer.flush()
    producer.close()

    worker = services("worker")
    consumer = KafkaConsumer(DEAD_LETTERS.name(s), bootstrap_servers=s.kafka_bootstrap,
                             auto_offset_reset="earliest", consumer_timeout_ms=1000)
    reasons: list[str] = []
    deadline = time.monotonic() + 90
    while len(reasons) < len(bad) and time.monotonic() < deadline:
        for m in consumer:
            h = dict(m.headers)
            assert h.get("source-topic") and h.get("source-offset") is not None
            reasons.append(h["reason"].decode())
    consumer.close()
    assert len(reasons) == len(bad), (reasons, worker.log_tail())
    assert "device_id_mismatch" in reasons and any(r in ("bad_magic", "truncated") for r in reasons)
    # the good frames after the bad ones were processed: their envelopes are in the derived topic
    features = KafkaConsumer(f"{s.topic_prefix}.derived.features", bootstrap_servers=s.kafka_bootstrap,
                             auto_offset_reset="earliest", consumer_timeout_ms=3000,
                             isolation_level="read_committed")
    deadline = time.monotonic() + 60
    n_env = 0
    while n_env < len(frames) - 5 and time.monotonic() < deadline:
        n_env += sum(1 for m in features if dict(m.headers).get("kind") == b"envelope")
    features.close()
    assert n_env >= len(frames) - 5  # the first window has no full envelope yet
    assert worker.proc.poll() is None, "the worker must keep running"

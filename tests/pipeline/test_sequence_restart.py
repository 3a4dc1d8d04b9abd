"""On the real pipeline: a device whose frame counter restarts with a new session has the new session's
frames stored and counted, the restart counted and alerted; records with an absurd device clock are
dead-lettered and leave nothing in the database."""

from __future__ import annotations

import dataclasses
import time

import pytest
from kafka import KafkaConsumer, KafkaProducer

from ingest import wire
from ingest.simulator import Simulation
from mimetic.config import Settings
from mimetic.topics import DEAD_LETTERS

from .conftest import query, wait_for

pytestmark = [pytest.mark.stack, pytest.mark.slow]

Y2000_US, Y2099_US = 946_684_800_000_000 + 3600 * 1_000_000, 4_070_908_800_000_000


def test_a_restarted_counter_is_stored_and_bad_clocks_are_dead_lettered(pipeline_settings: Settings,
                                                                         services) -> None:
    s = pipeline_settings
    sim = Simulation(patients=1, sessions=2, duration_s=20, seed=13, fault_prob=0.0, device_prefix="e2e-restart")
    device = sim.device_ids[0]
    records = list(sim.device_records(0))
    frames = [r.item for r in records if r.kind == wire.KIND_FRAME]
    sid_b = frames[-1].session_id
    first_b = min(f.seq for f in frames if f.session_id == sid_b)
    assert first_b > 1  # the simulator keeps counting across sessions; the device below does not
    items = []
    for r in records:
        item = r.item
        if r.kind == wire.KIND_FRAME and item.session_id == sid_b:  # rebooted: session B counts from 0 again
            item = dataclasses.replace(item, seq=item.seq - first_b, raw=None, _raw_fp=None)
        items.append(item)
    want = {str(sid): sum(1 for f in frames if f.session_id == sid) for sid in {f.session_id for f in frames}}
    bad_clock = [dataclasses.replace(frames[5], seq=10**6, t_us=Y2099_US, raw=None, _raw_fp=None),
                 dataclasses.replace(frames[6], seq=10**6 + 1, t_us=Y2000_US, raw=None, _raw_fp=None),
                 wire.telemetry_from_json({"seq": 10**6, "t_us": Y2099_US, "battery_pct": 1.0}, device)]

    producer = KafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all")
    for item in items + bad_clock:
        key, value, headers = wire.encode_record(item, source="test")
        kind = dict(headers)["kind"].decode()
        producer.send(wire.topic_spec_for(kind).name(s), key=key, value=value, headers=headers)
    producer.flush()
    producer.close()

    worker, sink = services("worker"), services("sink")

    def summarised() -> bool:
        rows = query(s, "select session_id::text, frames from session_summary "
                        "where device_id = %s and status = 'ended'", (device,))
        return dict(rows) == want

    wait_for(summarised, 180, f"both sessions summarised with every frame {want}", [worker, sink])
    envelopes_b = query(s, "select count(*) from envelope where device_id = %s and session_id = %s",
                        (device, sid_b))[0][0]
    assert envelopes_b >= want[str(sid_b)] - 2  # the first frame after the filter reset only fills the window
    wait_for(lambda: query(s, "select coalesce(sum(restarts), 0), coalesce(sum(clock_refused), 0) "
                              "from stream_stats where device_id = %s", (device,))[0] == (1, 3),
             60, "one restart and three clock refusals in the stream statistics", [worker, sink])
    alerts = query(s, "select severity, session_id, cleared_at is not null from alert "
                      "where device_id = %s and alert_type = 'sequence_restart'", (device,))
    assert alerts == [("info", sid_b, True)]
    # nothing of the refused records reached the database: no telemetry or chunk in 2000 or 2099
    assert query(s, "select count(*) from telemetry where device_id = %s and time > now() + interval '1 day'",
                 (device,))[0][0] == 0
    assert query(s, "select count(*) from envelope where device_id = %s "
                    "and (time < '2001-01-01' or time > '2098-01-01')", (device,))[0][0] == 0
    consumer = KafkaConsumer(DEAD_LETTERS.name(s), bootstrap_servers=s.kafka_bootstrap,
                             auto_offset_reset="earliest", consumer_timeout_ms=1000)
    reasons: list[str] = []
    deadline = time.monotonic() + 30
    while len(reasons) < 3 and time.monotonic() < deadline:
        reasons += [dict(m.headers)["reason"].decode() for m in consumer if m.key == device.encode()]
    consumer.close()
    assert sorted(reasons) == ["clock_future", "clock_future", "clock_past"]
    assert worker.proc.poll() is None

"""Storage test helpers: deterministic derived records, producing, counting rows."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from kafka import KafkaProducer

from mimetic import topics
from mimetic.config import Settings
from mimetic.kafka_admin import ensure_topics
from processors import records as r
from processors.sink import SINK_TOPICS

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
FRAME_S = 0.05          # 50 ms frames (100 samples at 2 kHz)
ENV_FS = 100.0          # envelope rate: 5 samples per channel per frame
N_CH = 8


def envelope_frames(device: str, n: int, session_id: uuid.UUID | None = None, t0: datetime = T0,
                    seq0: int = 0) -> list[r.EnvelopeFrame]:
    out = []
    for i in range(n):
        seq = seq0 + i
        arr = (np.arange(N_CH * 5, dtype=np.float32).reshape(N_CH, 5) + seq) % 97
        out.append(r.EnvelopeFrame.from_array(arr, device_id=device, session_id=session_id, seq=seq,
                                              time=t0 + timedelta(seconds=seq * FRAME_S), fs_hz=ENV_FS))
    return out


def mixed_records(device: str, n_frames: int, session_id: uuid.UUID, t0: datetime = T0) -> list[r.Record]:
    """Frames plus one of every other kind per second of frames (deterministic)."""
    recs: list[r.Record] = list(envelope_frames(device, n_frames, session_id, t0))
    seconds = max(1, int(n_frames * FRAME_S))
    for k in range(seconds):
        t = t0 + timedelta(seconds=k)
        recs.append(r.QualityRecord(device_id=device, session_id=session_id, time=t, window_s=1.0, channel=k % N_CH,
                                    muscle="zygomaticus", side="L", rms_uv=12.5, snr_db=20.0, contact_ok=True))
        recs.append(r.StreamStats(device_id=device, session_id=session_id, time=t, window_s=1.0, frames=20,
                                  samples=2000))
        recs.append(r.TelemetryRecord(device_id=device, time=t, seq=k, battery_pct=90.0 - k,
                                      impedance_kohm=[5.0] * N_CH))
        recs.append(r.BalanceRecord(device_id=device, session_id=session_id, time=t,
                                    time_end=t + timedelta(seconds=1), window_kind="sliding", muscle="zygomaticus",
                                    left=40.0, right=20.0, ai=1 / 3, ratio=0.5, affected_side="R"))
        recs.append(r.ActivationRecord(device_id=device, session_id=session_id, channel=2, muscle="zygomaticus",
                                       side="L", onset=t, offset=t + timedelta(milliseconds=600), peak_uv=80.0,
                                       mean_uv=40.0, area_uv_s=24.0, task="smile", repetition=k))
    raised = t0 + timedelta(seconds=0.5)
    aid = r.alert_id(device, "electrode_off", raised, channel=3)
    recs.append(r.AlertRecord(alert_id=aid, device_id=device, session_id=session_id, alert_type="electrode_off",
                              severity="warning", state="raised", time=raised, raised_at=raised, channel=3,
                              message="electrode 3 off"))
    recs.append(r.AlertRecord(alert_id=aid, device_id=device, session_id=session_id, alert_type="electrode_off",
                              severity="warning", state="cleared", time=raised + timedelta(seconds=1),
                              raised_at=raised, channel=3, message="electrode 3 back"))
    recs.append(r.TaskWindowRecord(device_id=device, session_id=session_id, task="smile", repetition=1,
                                   time=t0, time_end=t0 + timedelta(seconds=min(seconds, 2))))
    recs.append(r.SessionSummary(session_id=session_id, device_id=device, therapy_type="microcurrent",
                                 started_at=t0, ended_at=t0 + timedelta(seconds=seconds), minutes=seconds / 60,
                                 discomfort=2, computed_at=t0 + timedelta(seconds=seconds),
                                 muscles=[r.MuscleSummary(muscle="zygomaticus", ai=0.33, ratio=0.5)]))
    recs.append(r.ProRecord(device_id=device, session_id=session_id, time=t0 + timedelta(seconds=seconds),
                            instrument="grc", score=2.0, item_answers=[2]))
    return recs


def expected_rows(n_frames: int) -> dict[str, int]:
    seconds = max(1, int(n_frames * FRAME_S))
    return {"envelope": n_frames, "signal_quality": seconds, "stream_stats": seconds, "telemetry": seconds,
            "balance": seconds, "activation": seconds, "alert_event": 2, "alert": 1, "session_summary": 1, "task_window": 1,
            "session_muscle_summary": 1}


def produce(s: Settings, recs: list[r.Record], extra: list[tuple[str, bytes, bytes]] = ()) -> None:
    """Send records to their conventional topics (and raw (topic suffix, key, value) extras)."""
    p = KafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all", linger_ms=5, batch_size=256 * 1024)
    try:
        for rec in recs:
            key, value, headers = r.to_message(rec)
            p.send(f"{s.topic_prefix}.{r.TOPIC_OF_KIND[r.kind_of(rec)]}", key=key, value=value, headers=headers)
        for suffix, key, value in extra:
            p.send(f"{s.topic_prefix}.{suffix}", key=key, value=value)
        p.flush(timeout=30)
    finally:
        p.close()


def count_rows(conn, device: str) -> dict[str, int]:
    out = {}
    for table in ("envelope", "signal_quality", "stream_stats", "telemetry", "balance", "activation",
                  "alert_event", "alert", "session_summary", "task_window"):
        out[table] = conn.execute(f"select count(*) from {table} where device_id = %s", (device,)).fetchone()[0]
    out["session_muscle_summary"] = conn.execute(
        "select count(*) from session_muscle_summary m join session_summary s using (session_id) "
        "where s.device_id = %s", (device,)).fetchone()[0]
    return out


def run(coro):
    return asyncio.run(coro)

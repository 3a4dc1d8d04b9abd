"""A deterministic 24 s session of one 4-channel device, built without the simulator (so a saved
fixture stays valid when the simulator changes): rest, smiles with a weaker right side, task
markers, telemetry with low battery and a lost electrode, a patient report, the end."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

from ingest import wire
from ingest.wire import Frame

DEVICE = "dev-script"
SESSION = uuid.UUID(int=0x5C)
FS_HZ = 1000
N = 50  # samples per frame: 50 ms
T0_US = 1_700_000_000_000_000  # 2023-11-14
DURATION_S = 24
CHANNEL_MAP = [{"channel": 0, "muscle": "zygomaticus", "side": "L"},
               {"channel": 1, "muscle": "zygomaticus", "side": "R"},
               {"channel": 2, "muscle": "frontalis", "side": "L"},
               {"channel": 3, "muscle": "frontalis", "side": "R"}]
#: smiles (start s, stop s): the left side at 200 µV, the right at 80 µV (a weak right side)
SMILES_S = [(6.0, 7.5), (9.0, 10.0), (12.0, 14.0), (16.5, 17.0)]
TASKS_S = [("smile", 1, 5.5, 8.0), ("smile", 2, 8.5, 10.5), ("smile", 3, 11.5, 14.5)]


@dataclass(frozen=True)
class Item:
    kind: str  # "frame", "event", "telemetry"
    t_us: int
    item: Any


def emg_uv(seed: int = 7) -> np.ndarray:
    """(4, DURATION_S * FS_HZ) µV: 5 µV noise, bursts of band-limited noise with 40 ms ramps."""
    rng = np.random.default_rng(seed)
    n = DURATION_S * FS_HZ
    x = rng.normal(0.0, 5.0, size=(4, n))
    t = np.arange(n) / FS_HZ
    for a, b in SMILES_S:
        ramp = np.clip(np.minimum(t - a, b - t) / 0.04, 0.0, 1.0)
        burst = rng.normal(0.0, 1.0, size=n) * ramp
        x[0] += 200.0 * burst
        x[1] += 80.0 * burst
        x[2] += 15.0 * burst  # a little frontalis co-activation
    return x


def frame(k: int, x_uv: np.ndarray, session: uuid.UUID | None = SESSION) -> Frame:
    samples = np.clip(np.round(x_uv[:, k * N:(k + 1) * N] / 0.1), -32768, 32767).astype(np.int16)
    return Frame(device_id=DEVICE, seq=k, t_us=T0_US + k * N * 1000, fs_hz=FS_HZ, scale_uv=0.1,
                 samples=np.ascontiguousarray(samples), session_id=session)


def event(t_s: float, **body: Any):
    body = {"seq": 0, "t_us": T0_US + int(t_s * 1e6), "session_id": str(SESSION), **body}
    return wire.event_from_json(body, DEVICE)


def telemetry(k: int, **body: Any):
    return wire.telemetry_from_json({"seq": k, "t_us": T0_US + k * 1_000_000, "session_id": str(SESSION),
                                     **body}, DEVICE)


def records(seed: int = 7) -> list[Item]:
    """Everything the device sends, in send order (events a little before the frames they mark)."""
    x = emg_uv(seed)
    items: list[Item] = [Item("event", T0_US, event(0.0, type="session_start",
                                                   therapy_type="biofeedback_exercise", fs_hz=FS_HZ,
                                                   channel_map=CHANNEL_MAP))]
    for task, rep, a, b in TASKS_S:
        items.append(Item("event", T0_US + int(a * 1e6), event(a, type="task_start", task=task, repetition=rep)))
        items.append(Item("event", T0_US + int(b * 1e6), event(b, type="task_stop", task=task, repetition=rep)))
    for k in range(DURATION_S):
        body: dict[str, Any] = {"battery_pct": 30.0 - k, "impedance_kohm": [10.0, 12.0, 2000.0 if 15 <= k < 19
                                                                           else 11.0, 70.0]}
        items.append(Item("telemetry", T0_US + k * 1_000_000, telemetry(k, **body)))
    items.append(Item("event", T0_US + 18_000_000, event(18.0, type="patient_report", discomfort=8)))
    for k in range(DURATION_S * FS_HZ // N):
        items.append(Item("frame", T0_US + k * N * 1000, frame(k, x)))
    items.append(Item("event", T0_US + DURATION_S * 1_000_000, event(DURATION_S, type="session_end")))
    return sorted(items, key=lambda i: i.t_us)  # stable: events before the frame of the same time


def feed(dp, item: Item) -> list:
    """One item through a DeviceProcessor (no clock rule: the script is in 2023)."""
    if item.kind == "frame":
        recs, late = dp.on_frame(item.item, wire.encode_frame(item.item))
        assert not late
        return recs
    if item.kind == "telemetry":
        return dp.on_telemetry(item.item)
    return dp.on_event(item.item)

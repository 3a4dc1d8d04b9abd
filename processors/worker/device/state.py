"""A device's saved state (the worker's changelog record): typed parts as MessagePack.

Layout: 8-byte big-endian revision (read without decoding), then a MessagePack
map `Snapshot`. Every part is a msgspec Struct whose fields have defaults: a
field added to a part is saved and restored with no other edit, and a state
saved before it existed restores with the default. Version 5 is this layout;
versions 3 and 4 (one flat map, before the split into parts) are still read.
"""

from __future__ import annotations

from typing import Any

import msgspec

from processors.worker.device.activation import TaskMemory, TaskWindow
from processors.worker.device.balance import RestBaseline, SlidingBalance
from processors.worker.device.calibration import Calibration
from processors.worker.device.quality import MainsState, QualityFlags
from processors.worker.device.session import ChannelSite, Lifecycle, OpenTask, Session
from processors.worker.device.telemetry import StreamCounters

STATE_VERSION = 5
LEGACY_VERSIONS = (3, 4)  # 3: before sequence epochs (read by SequenceState)


class Core(msgspec.Struct):
    """The coordinator's own state: device clock, input offsets, the last sample seen."""

    t0_us: int | None = None  # device time of the chain's first sample
    last_end_us: int | None = None  # device time just after the last processed sample
    last_arrival_s: float | None = None  # gateway receive time of the last frame (record header)
    prev_last_uv: list[float] | None = None  # last sample of the previous frame (pulse shapes)
    #: per input topic (a short code), the offset of the last record applied to this state: a record
    #: redelivered after a crash, whose effect the saved state already holds, is recognised by it
    applied: dict[str, int] = {}


class Parts(msgspec.Struct):
    """All typed state of a device (the DSP chain, sequencing and alert tracker aside)."""

    core: Core = msgspec.field(default_factory=Core)
    life: Lifecycle = msgspec.field(default_factory=Lifecycle)
    rest: RestBaseline = msgspec.field(default_factory=RestBaseline)
    window: SlidingBalance = msgspec.field(default_factory=SlidingBalance)
    tasks: TaskMemory = msgspec.field(default_factory=TaskMemory)
    quality: QualityFlags = msgspec.field(default_factory=QualityFlags)
    mains: MainsState = msgspec.field(default_factory=MainsState)
    stats: StreamCounters = msgspec.field(default_factory=StreamCounters)
    calib: Calibration = msgspec.field(default_factory=Calibration)


class Snapshot(msgspec.Struct):
    v: int
    rev: int
    device_id: str
    seq: dict[str, Any]
    chain: dict[str, Any] | None
    alerts: dict[str, Any]
    parts: Parts
    #: the spectral windows of `processors.worker.fatigue` (None, as saved before them: started anew
    #: on the restored chain's clock)
    fatigue: dict[str, Any] | None = None


_ENC = msgspec.msgpack.Encoder()


def encode_state(rev: int, device_id: str, seq, chain, alerts, parts: Parts, fatigue=None) -> bytes:
    saved = msgspec.structs.replace(parts, mains=parts.mains.saved())
    return rev.to_bytes(8, "big") + _ENC.encode(Snapshot(
        v=STATE_VERSION, rev=rev, device_id=device_id, seq=seq.to_state(),
        chain=None if chain is None else chain.to_state(), alerts=alerts.to_state(), parts=saved,
        fatigue=None if fatigue is None else fatigue.to_state()))


def decode_state(data: bytes) -> Snapshot:
    """A saved state of this version or a legacy one; ValueError for any other."""
    d = msgspec.msgpack.decode(data[8:])
    v = d.get("v") if isinstance(d, dict) else None
    try:
        if v == STATE_VERSION:
            return msgspec.convert(d, Snapshot)
        if v in LEGACY_VERSIONS:
            return _from_legacy(d)
    except msgspec.ValidationError as exc:
        raise ValueError(f"device state version {v} unreadable: {exc}") from exc
    raise ValueError(f"unsupported device state version {v}")


def _session(s: dict[str, Any] | None) -> Session | None:
    if s is None:
        return None
    keys = Session.__struct_fields__
    return msgspec.convert({k: v for k, v in s.items() if k in keys}, Session)


def _from_legacy(d: dict[str, Any]) -> Snapshot:
    """A state of versions 3-4 (one flat map of string-keyed dicts) as parts."""
    o = d.get("open_task")
    life = Lifecycle(
        session=_session(d["session"]), closing=_session(d["closing"]), early_frames=d["early_frames"],
        open_task=None if o is None else OpenTask(o["session_id"], o["task"], o["rep"], o["start_us"]),
        channel_map=[msgspec.convert(c, ChannelSite) for c in d["channel_map"]], limit_ua=d["limit_ua"])
    parts = Parts(
        core=Core(t0_us=d["t0_us"], last_end_us=d["last_end_us"], last_arrival_s=d["last_arrival_s"],
                  prev_last_uv=d["prev_last_uv"], applied=d["applied"]),
        life=life,
        rest=RestBaseline(d["rest_mean"], d["rest_sd"], d["windows_seen"]),
        window=SlidingBalance(d["win_index"], d["win_sum"], d["win_sq"], d["win_n"]),
        tasks=TaskMemory([msgspec.convert(w, TaskWindow) for w in d.get("recent_tasks", [])]),
        quality=QualityFlags(d["signal_off"], d["contact_lost"]),
        mains=MainsState(d.get("mains_hz"), d.get("detect_mains", False), d.get("mains_session"),
                         d.get("mains_det"), d.get("mains_meter")),
        stats=StreamCounters(**{k: v for k, v in d["stats"].items() if k in StreamCounters.__struct_fields__}))
    return Snapshot(v=d["v"], rev=d["rev"], device_id=d["device_id"], seq=d["seq"], chain=d["chain"],
                    alerts=d["alerts"], parts=parts)

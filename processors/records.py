"""Derived-record contract: what the stream processors emit and the sink stores.

One module, so the Faust agents (producers) and the database sink (consumer)
cannot drift apart. Records are `msgspec.Struct`s encoded as MessagePack:
typed and validated on decode, compact, and fast (no per-field Python code).

Wire format of one Kafka message
--------------------------------
* key: the device id (UTF-8) for device records, the session id for session
  summaries - the same partitioning as the input topics.
* value: MessagePack map of the record's fields plus ``"kind": "<tag>"``
  (msgspec tagged union), so a payload is self-describing.
* headers: ``kind`` (the tag, so a consumer can route or skip without decoding)
  and ``schema`` (``SCHEMA_VERSION``). Build them with :func:`headers_for`.

Any record kind may travel on any derived topic; the sink routes by ``kind``.
The conventional topics are in :data:`TOPIC_OF_KIND`.

Times are timezone-aware UTC ``datetime``s (MessagePack timestamp extension);
naive datetimes are refused on encode and decode.

Natural keys (idempotency)
--------------------------
Every record has a deterministic natural key (``natural_key()``), computed only
from the input data (device, sequence number, event time, channel, window...),
never from wall-clock time or random ids. A replayed input therefore produces
records with the same keys, and the database's unique constraints (which are the
same columns, always including the hypertable's time column) turn the replay
into no-ops. Producers MUST derive every field of the key from the input.

Evolution: add fields only with defaults (old payloads still decode); removing
or re-typing a field needs a new ``SCHEMA_VERSION`` and a new kind.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta
from typing import Literal, Union

import msgspec
import numpy as np

SCHEMA_VERSION = 1

Severity = Literal["info", "warning", "critical"]
WindowKind = Literal["sliding", "task", "repetition"]
AlertState = Literal["raised", "cleared"]
SideCode = Literal["L", "R"]


class Record(msgspec.Struct, tag_field="kind", kw_only=True, omit_defaults=True):
    """Base of every derived record (never encoded itself)."""

    def natural_key(self) -> tuple:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def kafka_key(self) -> bytes:
        return self.device_id.encode()  # type: ignore[attr-defined]


# --- per device frame ---------------------------------------------------------


class EnvelopeFrame(Record, tag="envelope", kw_only=True):
    """Envelopes (µV) of every channel of one device frame.

    ``env`` is float32 little-endian, C order, shape (n_channels, n_samples):
    use :meth:`from_array` / :attr:`array`. Sample ``i`` is at
    ``time + i / fs_hz``. ``fs_hz`` is the envelope rate (often decimated).
    """

    device_id: str
    session_id: uuid.UUID | None = None
    seq: int                       # device frame sequence number
    time: datetime                 # time of the first envelope sample
    fs_hz: float
    n_channels: int
    env: bytes                     # float32 LE (n_channels x n_samples)
    clipped: int = 0               # bit mask of channels clipped in this frame
    stim_blanked: bool = False     # samples blanked for stimulation pulses

    @classmethod
    def from_array(cls, arr: np.ndarray, **fields) -> "EnvelopeFrame":
        a = np.ascontiguousarray(arr, dtype="<f4")
        if a.ndim != 2:
            raise ValueError("envelope array must be 2-D (channels x samples)")
        return cls(n_channels=a.shape[0], env=a.tobytes(), **fields)

    @property
    def array(self) -> np.ndarray:
        a = np.frombuffer(self.env, dtype="<f4")
        if self.n_channels <= 0 or a.size % self.n_channels:
            raise ValueError(f"envelope of {a.size} values does not split into {self.n_channels} channels")
        return a.reshape(self.n_channels, -1)

    def natural_key(self) -> tuple:
        return (self.device_id, self.time, self.seq)


class QualityRecord(Record, tag="quality", kw_only=True):
    """Signal quality of one channel over one window [time, time + window_s)."""

    device_id: str
    session_id: uuid.UUID | None = None
    time: datetime
    window_s: float
    channel: int
    muscle: str | None = None
    side: SideCode | None = None
    rms_uv: float | None = None          # raw (filtered) RMS
    baseline_uv: float | None = None     # rest baseline of the envelope
    snr_db: float | None = None
    mains_ratio: float | None = None     # power at mains + harmonics / total
    clipping_frac: float | None = None   # fraction of samples at the rails
    flatline_frac: float | None = None
    stim_artifact_frac: float | None = None
    contact_ok: bool | None = None
    score: float | None = None           # 0 (unusable) .. 1 (clean)

    def natural_key(self) -> tuple:
        return (self.device_id, self.channel, self.time)


class StreamStats(Record, tag="stream_stats", kw_only=True):
    """Per-device sequence accounting over a window ending at ``time`` (counts in the window)."""

    device_id: str
    session_id: uuid.UUID | None = None
    time: datetime
    window_s: float
    frames: int = 0
    samples: int = 0
    gaps: int = 0                 # gap events
    missing_frames: int = 0       # frames lost in gaps
    duplicates: int = 0           # dropped duplicates
    late: int = 0                 # out-of-order frames placed
    dead_lettered: int = 0        # frames sent to dead letters
    last_seq: int | None = None
    restarts: int = 0             # sequence counter restarts (new epochs, migration 0012)
    clock_refused: int = 0        # records refused by the device-clock rule (migration 0012)

    def natural_key(self) -> tuple:
        return (self.device_id, self.time)


class TelemetryRecord(Record, tag="telemetry", kw_only=True):
    """Validated device telemetry (stored in the `telemetry` hypertable of 0001)."""

    device_id: str
    time: datetime
    seq: int
    battery_pct: float | None = None
    temperature_c: float | None = None
    impedance_kohm: list[float] | None = None
    stim_current_ua: float | None = None
    signal_strength_dbm: float | None = None
    firmware_errors: list[str] | None = None

    def natural_key(self) -> tuple:
        return (self.device_id, self.time, self.seq)


# --- analysis -----------------------------------------------------------------


class BalanceRecord(Record, tag="balance", kw_only=True):
    """Left/right balance of one muscle pair over one window.

    ``ai = (left - right) / (left + right)`` in [-1, 1]; ``ratio = affected / healthy``
    (None when the affected side is unknown). ``left``/``right`` are the normalized
    activations (%MVC when ``normalized``, else µV). ``time`` is the window start,
    ``time_end`` its end. ``window_kind``: sliding (fixed length, continuous),
    task (one task marker window), repetition (one repetition inside a task).
    """

    device_id: str
    session_id: uuid.UUID | None = None
    time: datetime
    time_end: datetime
    window_kind: WindowKind
    muscle: str
    task: str | None = None
    repetition: int | None = None
    left: float
    right: float
    ai: float
    ratio: float | None = None
    affected_side: SideCode | None = None
    normalized: bool = True

    def natural_key(self) -> tuple:
        return (self.device_id, self.muscle, self.window_kind, self.time)


class ActivationRecord(Record, tag="activation", kw_only=True):
    """One closed muscle activation (double-threshold onset/offset) on one channel."""

    device_id: str
    session_id: uuid.UUID | None = None
    channel: int
    muscle: str
    side: SideCode
    onset: datetime
    offset: datetime
    peak_uv: float
    peak_time: datetime | None = None
    mean_uv: float
    area_uv_s: float
    peak_pct_mvc: float | None = None
    task: str | None = None
    repetition: int | None = None
    onset_latency_s: float | None = None     # from the task cue, when there is one
    target: bool | None = None               # activation of the task's target muscle?
    # fatigue of a sustained activation (processors.measures.fatigue; None when shorter than the minimum)
    median_freq_hz: float | None = None
    mean_freq_hz: float | None = None
    median_freq_slope_hz_s: float | None = None
    mean_freq_slope_hz_s: float | None = None

    @property
    def duration_s(self) -> float:
        return (self.offset - self.onset).total_seconds()

    def natural_key(self) -> tuple:
        return (self.device_id, self.channel, self.onset)


class MuscleSummary(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Per-muscle outcome of one session (inside :class:`SessionSummary`)."""

    muscle: str
    ai: float | None = None                 # mean over task windows of the muscle's own task
    ratio: float | None = None              # affected / healthy
    left_pct_mvc: float | None = None
    right_pct_mvc: float | None = None
    synkinesis: float | None = None         # non-target co-activation, affected vs healthy
    synkinesis_flag: bool = False
    activations: int = 0
    task_windows: int = 0


class SessionSummary(Record, tag="session_summary", kw_only=True):
    """Summary of one therapy session, emitted when it ends or times out.

    May be re-emitted (late data, a later end event): the one with the larger
    ``revision`` (then ``computed_at``) wins; equal revisions are a replay.
    ``computed_at`` must come from event time (e.g. the last frame's time), not the
    wall clock, so a replay is byte-identical.
    """

    session_id: uuid.UUID
    device_id: str
    patient_id: int | None = None
    therapy_type: str = "assessment"
    started_at: datetime
    ended_at: datetime | None = None
    status: Literal["open", "ended", "timed_out"] = "ended"
    minutes: float = 0.0
    active_minutes: float | None = None     # set by the database (app.refresh_session_activity)
    discomfort: int | None = None           # patient report 0-10
    skin_reaction: str | None = None
    max_stim_current_ua: float | None = None
    frames: int = 0
    missing_frames: int = 0
    duplicates: int = 0
    alerts: int = 0
    tasks: dict[str, int] = {}              # task -> repetitions done
    muscles: list[MuscleSummary] = []
    channel_map: list[dict[str, Union[int, str]]] = []   # [{"channel": 0, "muscle": ..., "side": "L"}]
    revision: int = 0
    computed_at: datetime

    @property
    def kafka_key(self) -> bytes:
        return self.device_id.encode()

    def natural_key(self) -> tuple:
        return (self.session_id,)


class AlertRecord(Record, tag="alert", kw_only=True):
    """A raise or a clear of one alert. ``alert_id`` identifies the episode:
    use :func:`alert_id` (device, alert type, channel, raise time) so raise and clear
    share it and a replay reproduces it. ``time`` is the event's time (the raise
    time for ``raised``, the clear time for ``cleared``)."""

    alert_id: str
    device_id: str
    session_id: uuid.UUID | None = None
    alert_type: str                # one of ALERT_TYPES: electrode_off, impedance, ...
    severity: Severity
    state: AlertState
    time: datetime
    raised_at: datetime
    channel: int | None = None
    value: float | None = None
    threshold: float | None = None
    message: str = ""

    def natural_key(self) -> tuple:
        return (self.alert_id, self.state, self.time)


class TaskWindowRecord(Record, tag="task_window", kw_only=True):
    """One repetition of a task ([task_start, task_stop) markers) of a session.

    The exact task-window statistics (balance per repetition, per-session
    asymmetry and synkinesis) are computed in the database from these windows and
    the stored envelopes, because markers and frames travel on different topics
    with no order between them.
    """

    device_id: str
    session_id: uuid.UUID
    task: str
    repetition: int
    time: datetime                 # task_start (device clock)
    time_end: datetime             # task_stop (device clock)

    def natural_key(self) -> tuple:
        return (self.session_id, self.task, self.repetition)


class ProRecord(Record, tag="pro", kw_only=True):
    """A patient-reported outcome the patient's app sent as a session event (wire.ProAnswer),
    validated there; stored in patient_reported_outcome for the patient the device was with."""

    device_id: str
    session_id: uuid.UUID
    time: datetime                 # when answered (device clock)
    instrument: str
    score: float
    item_answers: list[int] | None = None

    def natural_key(self) -> tuple:
        return (self.device_id, self.instrument, self.time)


ALERT_TYPES: tuple[str, ...] = (
    "electrode_off", "impedance", "over_current", "battery_low", "device_silent",
    "data_gap", "clipping", "mains_noise", "discomfort", "skin_reaction", "sequence_restart",
)


def alert_id(device_id: str, alert_type: str, raised_at: datetime, channel: int | None = None) -> str:
    """Deterministic id of one alert episode (raise and its clear share it)."""
    ms = int(raised_at.timestamp() * 1000)
    raw = f"{device_id}|{alert_type}|{'' if channel is None else channel}|{ms}"
    return f"{alert_type}-{hashlib.sha1(raw.encode()).hexdigest()[:16]}"


AnyRecord = Union[
    EnvelopeFrame, QualityRecord, StreamStats, TelemetryRecord,
    BalanceRecord, ActivationRecord, SessionSummary, AlertRecord, TaskWindowRecord, ProRecord,
]
RECORD_TYPES: dict[str, type[Record]] = {
    t.__struct_config__.tag: t  # type: ignore[attr-defined]
    for t in (EnvelopeFrame, QualityRecord, StreamStats, TelemetryRecord,
              BalanceRecord, ActivationRecord, SessionSummary, AlertRecord, TaskWindowRecord, ProRecord)
}

#: conventional topic (suffix in mimetic.topics) of each kind
TOPIC_OF_KIND: dict[str, str] = {
    "envelope": "derived.features",
    "quality": "derived.features",
    "stream_stats": "derived.features",
    "telemetry": "derived.telemetry",
    "balance": "derived.balance",
    "activation": "derived.activations",
    "session_summary": "derived.sessions",
    "alert": "derived.alerts",
    "task_window": "derived.sessions",
    "pro": "derived.sessions",
}


class DecodeError(ValueError):
    """A payload that is not a valid derived record (goes to the dead letters)."""


def _enc_hook(obj):
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")


_encoder = msgspec.msgpack.Encoder(enc_hook=_enc_hook)
_decoder = msgspec.msgpack.Decoder(AnyRecord)


def kind_of(record: Record) -> str:
    return type(record).__struct_config__.tag  # type: ignore[attr-defined]


def encode(record: Record) -> bytes:
    """MessagePack bytes of one record (its kind included)."""
    _check_aware(record)
    return _encoder.encode(record)


def decode(payload: bytes) -> AnyRecord:
    """The record in ``payload``; :class:`DecodeError` with the reason otherwise."""
    try:
        rec = _decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise DecodeError(str(exc)) from None
    try:
        _check_aware(rec)
        if isinstance(rec, EnvelopeFrame):
            rec.array  # noqa: B018 - validates the shape
    except ValueError as exc:
        raise DecodeError(str(exc)) from None
    return rec


def headers_for(record: Record) -> list[tuple[str, bytes]]:
    """Kafka headers of a record: ``kind`` and ``schema``."""
    return [("kind", kind_of(record).encode()), ("schema", str(SCHEMA_VERSION).encode())]


def to_message(record: Record) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """(key, value, headers) ready for a Kafka producer."""
    return record.kafka_key, encode(record), headers_for(record)


_TIME_FIELDS = ("time", "time_end", "onset", "offset", "peak_time", "started_at", "ended_at",
                "computed_at", "raised_at")


def _check_aware(record: Record) -> None:
    for name in _TIME_FIELDS:
        value = getattr(record, name, None)
        if isinstance(value, datetime) and value.utcoffset() is None:
            raise ValueError(f"{kind_of(record)}.{name} is a naive datetime; use UTC-aware times")


def sample_times(frame: EnvelopeFrame) -> list[datetime]:
    """Times of the samples of an envelope frame (for tests and tools)."""
    n = frame.array.shape[1]
    return [frame.time + timedelta(seconds=i / frame.fs_hz) for i in range(n)]

"""The device wire format and the Kafka record format: the single source of truth.

Everything that crosses a process boundary in ingest is defined here: what a
device sends, what the gateway writes to Kafka, and how the pipeline decodes it.

Wire format version 1
=====================

sEMG frame, binary (``Content-Type: application/x-mimetic-frame``)
--------------------------------------------------------------------
Little-endian throughout. A fixed 52-byte header, the device id, the samples,
and a CRC-32 trailer::

    offset size type     field
    0      4    bytes    magic            b"MEMG"
    4      1    uint8    version          1 (WIRE_VERSION)
    5      1    uint8    flags            bit 0 STIM_ACTIVE: stimulation was on during the frame
                                          bit 1 RESENT: the device is re-transmitting this frame
                                          bits 2-7 reserved, must be 0
    6      1    uint8    device_id_len    3..64
    7      1    uint8    reserved         0
    8      8    uint64   seq              device frame sequence number (per device, +1 per frame),
                                          0..2^63-1 (stored as a signed 64-bit integer downstream)
    16     8    int64    t_us             device time of the FIRST sample, µs since the Unix epoch,
                                          within years 2000-2099 (format bound; see "Device clock")
    24     4    uint32   fs_hz            sampling rate, 250..10000 Hz
    28     2    uint16   n_channels       1..64
    30     2    uint16   n_samples        samples per channel, 1..min(8192, fs_hz) (at most 1 s)
    32     4    float32  scale_uv         µV per count, finite, 1e-4..1000
    36     16   bytes    session_id       UUID of the therapy session, 16 zero bytes = none
    52     L    ascii    device_id        [A-Za-z0-9._-]{3,64} (must equal the URL's device id)
    52+L   2*C*N int16   samples          CHANNEL-MAJOR: all N samples of channel 0, then channel 1, ...
                                          (decodes with a zero-copy reshape to (C, N))
    end-4  4    uint32   crc32            zlib.crc32 of every preceding byte

Channel-major order was chosen because every consumer (filters, envelopes,
recordings) works on (n_channels, n_samples) arrays; a device that samples
interleaved transposes once before sending. Channel ``i`` is the device's
channel ``i`` of its registered channel map.

sEMG frame, JSON (``Content-Type: application/json``), for small devices and debugging
----------------------------------------------------------------------------------
Same fields, same limits, decoding to the same :class:`Frame`::

    {"v": 1, "device_id": "dev-01", "seq": 7, "t_us": 1767225600000000, "fs_hz": 2000,
     "scale_uv": 0.1, "session_id": null, "stim_active": false, "resent": false,
     "samples": [[0, 1, -2, ...], [...]]}        # counts, one list per channel

Samples are integer counts in the int16 range; NaN/Infinity and floats are refused.
``n_channels``/``n_samples`` are implied by ``samples`` (all lists equally long);
if given explicitly they must match.

Telemetry and session events (JSON)
-----------------------------------
Validated by the pydantic models :class:`Telemetry` and the :data:`Event` union
(discriminated by ``type``: ``session_start``, ``session_end``, ``task_start``,
``task_stop``, ``patient_report``, ``pro``). Unknown fields are refused. ``device_id``
may be omitted in a request body (the URL's id is filled in); if present it must
match. Each carries the device's own ``seq`` (a counter per record kind) and
``t_us`` (device time, µs since the epoch).

Bounds of every number (a value outside is refused with 422; non-finite floats
with reason ``nan``, the others ``invalid_telemetry`` / ``invalid_event``):

=========================  =============================================
field                      accepted
=========================  =============================================
``seq`` (all records)      integer 0..2^63-1
``t_us`` (all records)     integer µs in [2000-01-01, 2100-01-01), and
                           the device-clock rule below
``battery_pct``            0..100
``temperature_c``          -20..80 °C
``impedance_kohm``         each 0..100000 kΩ, at most 64 values
``stim_current_ua``        0..10000 µA
``signal_strength_dbm``    -150..20 dBm
``firmware_errors``        at most 32 strings of 1..64 characters
``fs_hz`` (session_start)  integer 250..10000 Hz
``mains_hz`` (session_st.) optional, 50 or 60: the mains frequency where
                           the device is used; recorded. The worker notches
                           what it detects in the first 2 s of the session's
                           frames, so that its output never depends on when
                           this event arrives relative to the frames
``channel_map``            1..64 entries, channels 0..n-1 once each
``stimulation``            current_limit_ua (0, 5000], current_ua
                           [0, current_limit_ua], frequency_hz (0, 1000],
                           pulse_width_us (0, 100000]
``repetition`` (tasks)     integer 1..10000
``discomfort``             integer 0..10
``note``, ``protocol``     at most 500 / 64 characters
``instrument`` (pro)       ``face``, ``saq`` or ``grc`` (patient-reported
                           outcome from the patient's app, :class:`ProAnswer`)
``score`` (pro)            FaCE 0..100, SAQ 20..100, GRC -7..7; optional
                           when ``item_answers`` are given (then computed)
``item_answers`` (pro)     FaCE 15 x 1..5, SAQ 9 x 1..5, GRC 1 x -7..7
=========================  =============================================

Binary and JSON frames are bounded as in the header table: seq 0..2^63-1,
t_us in years 2000-2099, fs_hz 250..10000, 1..64 channels, 1..min(8192, fs_hz)
samples per channel, scale_uv finite in [1e-4, 1000], samples int16.

Device clock
------------
Device time is compared with the gateway's receive time (the ``received-at-us``
header) by :func:`check_device_clock`: a frame, telemetry or event dated more
than ``MIMETIC_CLOCK_MAX_FUTURE_S`` (default 300 s) after its receive time is
refused with 422 ``clock_future``; one dated more than ``MIMETIC_CLOCK_MAX_AGE_S``
(default 7 days: a device that was offline for days can still upload what it
buffered, and its data stays far inside the retention horizon) before it, with
422 ``clock_past``. The gateway answers so; the worker applies the same rule to
every record it consumes and dead-letters a refused one with that reason.

Sequence numbers and restarts
-----------------------------
``seq`` counts each device's frames (+1 per frame). A device's counter may
start again (reboot, firmware update, new session). The pipeline treats a frame
whose seq is below the next expected one as the start of a new *sequence
epoch* when it belongs to a session not seen since the last epoch began, or,
if it is not flagged RESENT, when its ``t_us`` is later than every frame of the
epoch (a duplicate or late frame never is) or it is more than 4096 below the
next expected seq. Otherwise it is a duplicate (dropped) or late
(dead-lettered). A restart is counted and raised as an info alert
``sequence_restart``; the new epoch's frames are processed and stored.
Devices should start a new session id, or keep counting, across a restart; a
counter that restarts within the same session and at an older device time is
indistinguishable from a resend. See :mod:`processors.sequencing`.

Validation errors
-----------------
:class:`WireError` has a machine-readable ``reason`` and the HTTP ``status`` the
gateway answers with: 400 when the body cannot be parsed as the claimed format
(``truncated``, ``bad_magic``, ``bad_crc``, ``count_mismatch``, ``bad_json``,
``trailing_bytes``...), 422 when it parses but a value is unacceptable
(``unsupported_version``, ``nan``, ``bad_seq``, ``bad_timestamp``, ``bad_rate``,
``too_many_channels``, ``too_many_samples``, ``device_id_mismatch``,
``invalid_telemetry``, ``clock_future``, ``clock_past``...).
The body-size limit (413) is enforced by the gateway before decoding.

Kafka records
=============
Key: the device id (UTF-8) on every topic. Values:

* ``raw.frames``: the canonical binary frame (:func:`encode_frame` of the decoded
  frame; a JSON frame becomes binary here, so the pipeline reads one format).
* ``raw.telemetry``: canonical JSON of :class:`Telemetry` (``model_dump_json``).
* ``raw.events``: canonical JSON of the event model.

Headers (all values UTF-8 text):

* ``content-type``: ``application/x-mimetic-frame;v=1`` or ``application/json;v=1``
* ``kind``: ``frame`` | ``telemetry`` | ``event``
* ``received-at-us``: gateway (or producer) wall-clock time, µs since the epoch
  (decimal digits, at most 18; anything else reads as absent); the time the
  device-clock rule compares with
* ``source``: ``http`` | ``ws`` | ``simulator`` | ``replay``
* ``dup``: ``1`` when the gateway had already had the same (device, kind, seq)
  acknowledged by Kafka recently (a retried request whose first answer was lost)
* ``resent``: ``1`` when the same (device, kind, seq) was attempted before but not
  acknowledged (e.g. a retry after a 503: the first attempt may still land; or, on a
  pipelined WebSocket, a repeat that arrives before the first copy's acknowledgement),
  or the device set the RESENT flag.

Duplicates are passed through and marked, never dropped here: the pipeline
deduplicates on (device, kind, seq) and must treat ``dup``/``resent`` as hints,
not as the only signal. Use :func:`decode_frame_record`,
:func:`decode_telemetry_record`, :func:`decode_event_record` (or the generic
:func:`decode_record`) to read them back.
"""

from __future__ import annotations

import json
import math
import re
import struct
import time
import uuid
import zlib
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from mimetic.domain import MUSCLES, PRO_INSTRUMENTS, TASKS, THERAPY_TYPES, Side, check_pro

WIRE_VERSION = 1
MAGIC = b"MEMG"
HEADER = struct.Struct("<4sBBBBQqIHHf16s")
HEADER_SIZE = HEADER.size  # 52
CRC_SIZE = 4
assert HEADER_SIZE == 52

FLAG_STIM_ACTIVE = 0x01
FLAG_RESENT = 0x02
_KNOWN_FLAGS = FLAG_STIM_ACTIVE | FLAG_RESENT

FS_MIN_HZ = 250
FS_MAX_HZ = 10_000
MAX_CHANNELS = 64
MAX_SAMPLES = 8192
SCALE_MIN_UV = 1e-4
SCALE_MAX_UV = 1000.0
_SCALE_MIN_F32, _SCALE_MAX_F32 = float(np.float32(SCALE_MIN_UV)), float(np.float32(SCALE_MAX_UV))
#: device timestamps must fall in [2000-01-01, 2100-01-01)
T_MIN_US = 946_684_800_000_000
T_MAX_US = 4_102_444_800_000_000
#: seq is a uint64 on the wire, but every store of it (Kafka record fields, PostgreSQL bigint) is a
#: signed 64-bit integer: seq must be in [0, SEQ_MAX]
SEQ_MAX = 2**63 - 1

DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9._-]{3,64}$")

CT_FRAME = "application/x-mimetic-frame"
CT_JSON = "application/json"
CT_FRAME_V = f"{CT_FRAME};v={WIRE_VERSION}"
CT_JSON_V = f"{CT_JSON};v={WIRE_VERSION}"

_NIL_UUID = b"\x00" * 16


class WireError(ValueError):
    """Invalid input. ``reason`` is a stable machine-readable code, ``status`` the HTTP answer."""

    def __init__(self, reason: str, detail: str = "", status: int = 400):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.status = status

    def as_json(self) -> dict[str, Any]:
        return {"error": self.reason, "detail": self.detail}


def _bad(reason: str, detail: str = "") -> WireError:
    return WireError(reason, detail, 400)


def _invalid(reason: str, detail: str = "") -> WireError:
    return WireError(reason, detail, 422)


def now_us() -> int:
    return time.time_ns() // 1000


def check_device_clock(t_us: int, received_at_us: int, max_future_s: float, max_age_s: float) -> None:
    """The device-clock rule: ``t_us`` (device time) against ``received_at_us`` (gateway time).

    Raises WireError 422 ``clock_future`` when the device time is more than ``max_future_s``
    ahead of the receive time, ``clock_past`` when it is more than ``max_age_s`` behind it.
    """
    ahead_s = (t_us - received_at_us) / 1e6
    if ahead_s > max_future_s:
        raise _invalid("clock_future", f"device time is {ahead_s:.0f} s ahead of the receive time "
                                       f"(at most {max_future_s:g} s)")
    if -ahead_s > max_age_s:
        raise _invalid("clock_past", f"device time is {-ahead_s:.0f} s before the receive time "
                                     f"(at most {max_age_s:g} s)")


# ---------------------------------------------------------------------------
# sEMG frames
# ---------------------------------------------------------------------------


@dataclass(eq=False)
class Frame:
    """One block of multichannel sEMG from one device.

    ``samples`` are int16 counts, shape (n_channels, n_samples); multiply by
    ``scale_uv`` for microvolts (:meth:`microvolts`). ``t_us`` is the device time of
    the first sample; sample ``k`` is at ``t_us + k * 1e6 / fs_hz``.
    """

    device_id: str
    seq: int
    t_us: int
    fs_hz: int
    scale_uv: float
    samples: np.ndarray
    session_id: uuid.UUID | None = None
    stim_active: bool = False
    resent: bool = False
    #: the exact bytes this frame was decoded from (decode accepts only canonical frames), with the
    #: fingerprint of the fields at decode time: encode_frame reuses them only if nothing changed
    raw: bytes | None = field(default=None, repr=False, compare=False)
    _raw_fp: tuple | None = field(default=None, repr=False, compare=False)

    def _fingerprint(self) -> tuple:
        return (self.device_id, self.seq, self.t_us, self.fs_hz, self.scale_uv, self.session_id,
                self.stim_active, self.resent, id(self.samples), self.samples.flags.writeable)

    def __post_init__(self) -> None:
        if self.raw is not None:
            self._raw_fp = self._fingerprint()

    @property
    def n_channels(self) -> int:
        return int(self.samples.shape[0])

    @property
    def n_samples(self) -> int:
        return int(self.samples.shape[1])

    @property
    def duration_us(self) -> int:
        return self.n_samples * 1_000_000 // self.fs_hz

    @property
    def flags(self) -> int:
        return (FLAG_STIM_ACTIVE if self.stim_active else 0) | (FLAG_RESENT if self.resent else 0)

    def microvolts(self) -> np.ndarray:
        """Samples in µV as float64, shape (n_channels, n_samples)."""
        return self.samples.astype(np.float64) * float(np.float32(self.scale_uv))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frame):
            return NotImplemented
        return (
            self.device_id == other.device_id and self.seq == other.seq and self.t_us == other.t_us
            and self.fs_hz == other.fs_hz and np.float32(self.scale_uv) == np.float32(other.scale_uv)
            and self.session_id == other.session_id and self.stim_active == other.stim_active
            and self.resent == other.resent and self.samples.shape == other.samples.shape
            and bool(np.array_equal(self.samples, other.samples))
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON wire form of this frame."""
        return {
            "v": WIRE_VERSION,
            "device_id": self.device_id,
            "seq": self.seq,
            "t_us": self.t_us,
            "fs_hz": self.fs_hz,
            "scale_uv": float(np.float32(self.scale_uv)),
            "session_id": str(self.session_id) if self.session_id else None,
            "stim_active": self.stim_active,
            "resent": self.resent,
            "samples": self.samples.tolist(),
        }


def _check_common(device_id: Any, seq: Any, t_us: Any, fs_hz: Any, n_ch: int, n_s: int, scale: Any) -> None:
    if not isinstance(device_id, str) or not DEVICE_ID_RE.match(device_id):
        raise _invalid("bad_device_id", "device id must match [A-Za-z0-9._-]{3,64}")
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq <= SEQ_MAX:
        raise _invalid("bad_seq", "seq must be an integer in [0, 2^63 - 1]")
    if not isinstance(t_us, int) or isinstance(t_us, bool) or not T_MIN_US <= t_us < T_MAX_US:
        raise _invalid("bad_timestamp", "t_us must be µs since the epoch within years 2000-2099")
    if not isinstance(fs_hz, int) or isinstance(fs_hz, bool) or not FS_MIN_HZ <= fs_hz <= FS_MAX_HZ:
        raise _invalid("bad_rate", f"fs_hz must be an integer in [{FS_MIN_HZ}, {FS_MAX_HZ}], got {fs_hz!r}")
    if n_ch < 1:
        raise _invalid("no_channels", "a frame needs at least one channel")
    if n_ch > MAX_CHANNELS:
        raise _invalid("too_many_channels", f"{n_ch} > {MAX_CHANNELS}")
    if n_s < 1:
        raise _invalid("no_samples", "a frame needs at least one sample per channel")
    if n_s > MAX_SAMPLES or n_s > fs_hz:
        raise _invalid("too_many_samples", f"{n_s} samples > min({MAX_SAMPLES}, fs_hz={fs_hz}) (frames are at most 1 s)")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise _invalid("bad_scale", "scale_uv must be a number")
    if not math.isfinite(scale):
        raise _invalid("nan", "scale_uv is not finite")
    # compared as the float32 the header carries: a frame encoded at the limit must decode
    if not _SCALE_MIN_F32 <= scale <= _SCALE_MAX_F32:
        raise _invalid("bad_scale", f"scale_uv must be in [{SCALE_MIN_UV}, {SCALE_MAX_UV}] µV/count")


def validate_frame(frame: Frame) -> Frame:
    """Check a Frame built in code against the same limits as decoded ones."""
    s = frame.samples
    if not isinstance(s, np.ndarray) or s.ndim != 2:
        raise _invalid("bad_samples", "samples must be a 2-D array (n_channels, n_samples)")
    _check_common(frame.device_id, frame.seq, frame.t_us, frame.fs_hz, s.shape[0], s.shape[1], frame.scale_uv)
    if s.dtype != np.int16:
        raise _invalid("bad_samples", "samples must be int16 counts")
    return frame


def encode_frame(frame: Frame) -> bytes:
    """The binary wire form (validated first; raises WireError)."""
    if frame.raw is not None and frame._raw_fp == frame._fingerprint() and not frame.samples.flags.writeable:
        return frame.raw  # decoded from these bytes and unchanged (samples: read-only view of them)
    validate_frame(frame)
    did = frame.device_id.encode("ascii")
    sid = frame.session_id.bytes if frame.session_id else _NIL_UUID
    head = HEADER.pack(MAGIC, WIRE_VERSION, frame.flags, len(did), 0, frame.seq, frame.t_us, frame.fs_hz,
                       frame.n_channels, frame.n_samples, frame.scale_uv, sid)
    body = head + did + np.ascontiguousarray(frame.samples, dtype="<i2").tobytes()
    return body + struct.pack("<I", zlib.crc32(body))


def peek_header(data: bytes) -> dict[str, Any]:
    """Header fields of a binary frame without validating the rest (for logs and routing)."""
    if len(data) < HEADER_SIZE:
        raise _bad("truncated", f"{len(data)} bytes < {HEADER_SIZE}-byte header")
    magic, version, flags, did_len, _r, seq, t_us, fs, nch, ns, scale, sid = HEADER.unpack_from(data)
    return {"magic": magic, "version": version, "flags": flags, "device_id_len": did_len, "seq": seq,
            "t_us": t_us, "fs_hz": fs, "n_channels": nch, "n_samples": ns, "scale_uv": scale, "session_id": sid}


def decode_frame(data: bytes | bytearray | memoryview, expected_device: str | None = None) -> Frame:
    """Parse and validate a binary frame; ``expected_device`` is the authenticated device id."""
    data = bytes(data)
    h = peek_header(data)
    if h["magic"] != MAGIC:
        raise _bad("bad_magic", f"expected {MAGIC!r}")
    if h["version"] != WIRE_VERSION:
        raise _invalid("unsupported_version", f"wire version {h['version']}, this gateway speaks {WIRE_VERSION}")
    if h["flags"] & ~_KNOWN_FLAGS & 0xFF:
        raise _invalid("bad_flags", f"reserved flag bits set: {h['flags']:#04x}")
    if data[7] != 0:
        raise _invalid("bad_header", "reserved header byte must be 0")
    did_len, nch, ns = h["device_id_len"], h["n_channels"], h["n_samples"]
    expected_len = HEADER_SIZE + did_len + 2 * nch * ns + CRC_SIZE
    if len(data) < expected_len:
        raise _bad("truncated", f"{len(data)} bytes, header announces {expected_len}")
    if len(data) > expected_len:
        raise _bad("count_mismatch", f"{len(data)} bytes, header announces {expected_len} "
                                     f"({nch} channels x {ns} samples)")
    (crc,) = struct.unpack_from("<I", data, expected_len - CRC_SIZE)
    if zlib.crc32(memoryview(data)[: expected_len - CRC_SIZE]) != crc:
        raise _bad("bad_crc", "CRC-32 does not match the frame content")
    try:
        device_id = data[HEADER_SIZE: HEADER_SIZE + did_len].decode("ascii")
    except UnicodeDecodeError:
        raise _invalid("bad_device_id", "device id is not ASCII") from None
    scale = float(h["scale_uv"])
    _check_common(device_id, h["seq"], h["t_us"], h["fs_hz"], nch, ns, scale)
    if expected_device is not None and device_id != expected_device:
        raise _invalid("device_id_mismatch", f"frame says {device_id!r}, URL says {expected_device!r}")
    off = HEADER_SIZE + did_len
    samples = np.frombuffer(data, dtype="<i2", count=nch * ns, offset=off).reshape(nch, ns)
    if samples.dtype != np.int16:  # big-endian hosts
        samples = samples.astype(np.int16)
    sid = h["session_id"]
    return Frame(
        device_id=device_id, seq=h["seq"], t_us=h["t_us"], fs_hz=h["fs_hz"], scale_uv=scale,
        samples=samples, session_id=None if sid == _NIL_UUID else uuid.UUID(bytes=sid),
        stim_active=bool(h["flags"] & FLAG_STIM_ACTIVE), resent=bool(h["flags"] & FLAG_RESENT), raw=data,
    )


def _reject_constant(name: str) -> Any:
    raise _invalid("nan", f"{name} is not allowed in JSON")


def parse_json(body: bytes | str) -> Any:
    """json.loads that refuses NaN/Infinity (reason ``nan``) and reports syntax errors as ``bad_json``."""
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except WireError:
        raise
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise _bad("bad_json", str(exc)[:200]) from None


_JSON_FRAME_KEYS = {"v", "device_id", "seq", "t_us", "fs_hz", "scale_uv", "session_id", "stim_active",
                    "resent", "samples", "n_channels", "n_samples", "kind"}


def frame_from_json(obj: Any, expected_device: str | None = None) -> Frame:
    """Validate the JSON form (already parsed) and build a Frame."""
    if not isinstance(obj, dict):
        raise _bad("bad_json", "a JSON frame is an object")
    unknown = set(obj) - _JSON_FRAME_KEYS
    if unknown:
        raise _invalid("unknown_field", f"unknown fields: {sorted(unknown)[:5]}")
    v = obj.get("v", WIRE_VERSION)
    if v != WIRE_VERSION or isinstance(v, bool):
        raise _invalid("unsupported_version", f"wire version {v!r}, this gateway speaks {WIRE_VERSION}")
    device_id = obj.get("device_id", expected_device)
    samples = obj.get("samples")
    if not isinstance(samples, list) or not all(isinstance(ch, list) for ch in samples):
        raise _bad("bad_samples", "samples must be a list of per-channel lists")
    nch = len(samples)
    ns = len(samples[0]) if nch else 0
    if any(len(ch) != ns for ch in samples):
        raise _bad("count_mismatch", "all channels must have the same number of samples")
    if obj.get("n_channels", nch) != nch or obj.get("n_samples", ns) != ns:
        raise _bad("count_mismatch", f"n_channels/n_samples do not match the samples ({nch}x{ns})")
    scale = obj.get("scale_uv")
    _check_common(device_id, obj.get("seq"), obj.get("t_us"), obj.get("fs_hz"), nch, ns, scale)
    if expected_device is not None and device_id != expected_device:
        raise _invalid("device_id_mismatch", f"frame says {device_id!r}, URL says {expected_device!r}")
    for ch in samples:
        for x in ch:
            if type(x) is not int:
                if isinstance(x, float) and not math.isfinite(x):
                    raise _invalid("nan", "samples contain NaN or infinity")
                raise _invalid("bad_samples", "samples must be integer counts")
    arr = np.array(samples, dtype=np.int64)
    if arr.size and (arr.min() < -32768 or arr.max() > 32767):
        raise _invalid("sample_out_of_range", "samples must fit int16")
    sid = obj.get("session_id")
    try:
        session_id = uuid.UUID(sid) if sid is not None else None
    except (ValueError, TypeError, AttributeError):
        raise _invalid("bad_session_id", "session_id must be a UUID string") from None
    for flag in ("stim_active", "resent"):
        if not isinstance(obj.get(flag, False), bool):
            raise _invalid("bad_flags", f"{flag} must be a boolean")
    return Frame(device_id=device_id, seq=obj["seq"], t_us=obj["t_us"], fs_hz=obj["fs_hz"],
                 scale_uv=float(np.float32(scale)), samples=arr.astype(np.int16), session_id=session_id,
                 stim_active=obj.get("stim_active", False), resent=obj.get("resent", False))


def decode_frame_json(body: bytes | str, expected_device: str | None = None) -> Frame:
    return frame_from_json(parse_json(body), expected_device)


def encode_frame_json(frame: Frame) -> bytes:
    validate_frame(frame)
    return json.dumps(frame.to_json(), separators=(",", ":")).encode()


# ---------------------------------------------------------------------------
# Telemetry and session events
# ---------------------------------------------------------------------------

_Strict = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

DeviceId = Annotated[str, Field(pattern=DEVICE_ID_RE.pattern)]
Seq = Annotated[int, Field(ge=0, le=SEQ_MAX)]
Tus = Annotated[int, Field(ge=T_MIN_US, lt=T_MAX_US)]


class _Record(BaseModel):
    model_config = _Strict
    v: Literal[1] = 1
    device_id: DeviceId
    seq: Seq = Field(description="device counter for this record kind")
    t_us: Tus = Field(description="device time, µs since the Unix epoch")


class Telemetry(_Record):
    """Device status, typically once a second."""

    kind: Literal["telemetry"] = "telemetry"
    session_id: uuid.UUID | None = None
    battery_pct: float | None = Field(None, ge=0, le=100)
    temperature_c: float | None = Field(None, ge=-20, le=80, description="device/skin temperature °C")
    impedance_kohm: list[Annotated[float, Field(ge=0, le=100_000)]] | None = Field(
        None, max_length=MAX_CHANNELS, description="per electrode/channel, channel order, kΩ")
    stim_current_ua: float | None = Field(None, ge=0, le=10_000, description="measured stimulation current µA")
    signal_strength_dbm: float | None = Field(None, ge=-150, le=20)
    firmware_errors: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=32)


class ChannelMapEntry(BaseModel):
    model_config = _Strict
    channel: int = Field(ge=0, lt=MAX_CHANNELS)
    muscle: str
    side: Side

    @field_validator("muscle")
    @classmethod
    def _known_muscle(cls, v: str) -> str:
        if v not in MUSCLES:
            raise ValueError(f"unknown muscle {v!r}; known: {sorted(MUSCLES)}")
        return v


def check_channel_map(entries: list[ChannelMapEntry]) -> list[ChannelMapEntry]:
    """Channels 0..n-1 each once, each (muscle, side) once."""
    chans = sorted(e.channel for e in entries)
    if chans != list(range(len(entries))):
        raise ValueError("channel map must list channels 0..n-1 exactly once")
    sites = [(e.muscle, e.side) for e in entries]
    if len(set(sites)) != len(sites):
        raise ValueError("a (muscle, side) appears twice in the channel map")
    return entries


ChannelMap = Annotated[list[ChannelMapEntry], Field(min_length=1, max_length=MAX_CHANNELS)]


class Stimulation(BaseModel):
    model_config = _Strict
    current_limit_ua: float = Field(gt=0, le=5000, description="prescribed maximum current µA")
    current_ua: float = Field(ge=0, le=5000, description="programmed current µA")
    frequency_hz: float = Field(gt=0, le=1000)
    pulse_width_us: float = Field(gt=0, le=100_000)
    waveform: Literal["biphasic", "monophasic", "modulated"] = "biphasic"

    @model_validator(mode="after")
    def _within_limit(self) -> "Stimulation":
        if self.current_ua > self.current_limit_ua:
            raise ValueError("programmed current exceeds the prescribed limit")
        return self


class _SessionRecord(_Record):
    session_id: uuid.UUID


class SessionStart(_SessionRecord):
    type: Literal["session_start"]
    therapy_type: str
    fs_hz: int = Field(ge=FS_MIN_HZ, le=FS_MAX_HZ)
    channel_map: ChannelMap
    stimulation: Stimulation | None = None
    protocol: str | None = Field(None, max_length=64)
    #: the mains frequency where the device is used; None: the worker detects it
    mains_hz: Literal[50, 60] | None = None

    @field_validator("therapy_type")
    @classmethod
    def _therapy(cls, v: str) -> str:
        if v not in THERAPY_TYPES:
            raise ValueError(f"unknown therapy type {v!r}; known: {list(THERAPY_TYPES)}")
        return v

    @field_validator("channel_map")
    @classmethod
    def _map(cls, v: list[ChannelMapEntry]) -> list[ChannelMapEntry]:
        return check_channel_map(v)

    @model_validator(mode="after")
    def _stim_needed(self) -> "SessionStart":
        if self.therapy_type == "microcurrent" and self.stimulation is None:
            raise ValueError("microcurrent sessions need stimulation parameters")
        return self


class SessionEnd(_SessionRecord):
    type: Literal["session_end"]
    reason: Literal["completed", "aborted", "battery", "fault", "timeout"] = "completed"


class TaskMarker(_SessionRecord):
    type: Literal["task_start", "task_stop"]
    task: str
    repetition: int = Field(ge=1, le=10_000)

    @field_validator("task")
    @classmethod
    def _task(cls, v: str) -> str:
        if v not in TASKS:
            raise ValueError(f"unknown task {v!r}; known: {list(TASKS)}")
        return v


class PatientReport(_SessionRecord):
    type: Literal["patient_report"]
    discomfort: int = Field(ge=0, le=10)
    skin_reaction: Literal["none", "redness", "itching", "burning", "blister", "other"] = "none"
    note: str | None = Field(None, max_length=500)


class ProAnswer(_SessionRecord):
    """A patient-reported outcome questionnaire the patient completed in the app (``t_us``: when).

    Ranges per instrument (mimetic.domain.PRO_RANGES, table pro_instrument): FaCE 0..100 with
    15 items 1..5; SAQ 20..100 with 9 items 1..5; GRC -7..7 with one item -7..7. The score may
    be omitted when the items are given (it is computed from them); if both are given they
    must agree."""

    type: Literal["pro"]
    instrument: Literal[PRO_INSTRUMENTS]  # type: ignore[valid-type]
    score: float | None = Field(None, ge=-7, le=100, allow_inf_nan=False)
    item_answers: list[Annotated[int, Field(ge=-7, le=7)]] | None = Field(None, min_length=1, max_length=15)

    @model_validator(mode="after")
    def _ranges(self) -> "ProAnswer":
        object.__setattr__(self, "score", check_pro(self.instrument, self.score, self.item_answers))
        return self


Event = Annotated[Union[SessionStart, SessionEnd, TaskMarker, PatientReport, ProAnswer],
                  Field(discriminator="type")]
_EVENT = TypeAdapter(Event)


def _validation_error(kind: str, exc: ValidationError) -> WireError:
    errs = exc.errors(include_url=False, include_input=False)
    first = errs[0] if errs else {}
    loc = ".".join(str(x) for x in first.get("loc", ()))
    msg = first.get("msg", str(exc))
    reason = "nan" if "finite" in msg.lower() else f"invalid_{kind}"
    return _invalid(reason, f"{loc}: {msg}"[:300])


def _fill_device(obj: Any, expected_device: str | None) -> Any:
    if not isinstance(obj, dict):
        raise _bad("bad_json", "expected a JSON object")
    if expected_device is not None:
        if "device_id" not in obj:
            obj = {**obj, "device_id": expected_device}
        elif obj["device_id"] != expected_device:
            raise _invalid("device_id_mismatch", f"body says {obj['device_id']!r}, URL says {expected_device!r}")
    return obj


def telemetry_from_json(obj: Any, expected_device: str | None = None) -> Telemetry:
    obj = _fill_device(obj, expected_device)
    try:
        return Telemetry.model_validate(obj)
    except ValidationError as exc:
        raise _validation_error("telemetry", exc) from None


def event_from_json(obj: Any, expected_device: str | None = None
                    ) -> SessionStart | SessionEnd | TaskMarker | PatientReport | ProAnswer:
    obj = _fill_device(obj, expected_device)
    try:
        return _EVENT.validate_python(obj)
    except ValidationError as exc:
        raise _validation_error("event", exc) from None


def decode_telemetry(body: bytes | str, expected_device: str | None = None) -> Telemetry:
    return telemetry_from_json(parse_json(body), expected_device)


def decode_event(body: bytes | str, expected_device: str | None = None):
    return event_from_json(parse_json(body), expected_device)


def encode_model(model: BaseModel) -> bytes:
    """Canonical JSON of a telemetry or event model (what goes into Kafka)."""
    return model.model_dump_json().encode()


# ---------------------------------------------------------------------------
# Kafka records
# ---------------------------------------------------------------------------

KIND_FRAME = "frame"
KIND_TELEMETRY = "telemetry"
KIND_EVENT = "event"
KINDS = (KIND_FRAME, KIND_TELEMETRY, KIND_EVENT)


@dataclass
class RecordMeta:
    """What the headers of a raw record say."""

    kind: str
    content_type: str
    received_at_us: int | None
    source: str | None
    dup: bool = False
    resent: bool = False
    extra: dict[str, str] = field(default_factory=dict)


def record_headers(kind: str, *, source: str, received_at_us: int | None = None, dup: bool = False,
                   resent: bool = False) -> list[tuple[str, bytes]]:
    ct = CT_FRAME_V if kind == KIND_FRAME else CT_JSON_V
    h = [("content-type", ct.encode()), ("kind", kind.encode()),
         ("received-at-us", str(received_at_us if received_at_us is not None else now_us()).encode()),
         ("source", source.encode())]
    if dup:
        h.append(("dup", b"1"))
    if resent:
        h.append(("resent", b"1"))
    return h


def encode_record(item: Frame | Telemetry | BaseModel, *, source: str, received_at_us: int | None = None,
                  dup: bool = False, resent: bool = False) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """(key, value, headers) of the Kafka record for a validated frame, telemetry or event."""
    if isinstance(item, Frame):
        kind, value = KIND_FRAME, encode_frame(item)
        resent = resent or item.resent
    elif isinstance(item, Telemetry):
        kind, value = KIND_TELEMETRY, encode_model(item)
    else:
        kind, value = KIND_EVENT, encode_model(item)
    return item.device_id.encode(), value, record_headers(kind, source=source, received_at_us=received_at_us,
                                                          dup=dup, resent=resent)


def topic_spec_for(kind: str):
    from mimetic import topics

    return {KIND_FRAME: topics.RAW_FRAMES, KIND_TELEMETRY: topics.TELEMETRY, KIND_EVENT: topics.SESSION_EVENTS}[kind]


def parse_headers(headers: Any) -> RecordMeta:
    """Headers as aiokafka/kafka-python (sequence of (str, bytes)) or Faust (mapping) give them -> RecordMeta."""
    d: dict[str, str] = {}
    items = headers.items() if hasattr(headers, "items") else (headers or ())
    for k, v in items:
        d[k] = v.decode("utf-8", "replace") if isinstance(v, (bytes, bytearray)) else str(v)
    rat = d.get("received-at-us")
    return RecordMeta(
        kind=d.get("kind", ""), content_type=d.get("content-type", ""),
        received_at_us=int(rat) if rat and rat.isascii() and rat.isdigit() and len(rat) <= 18 else None,
        source=d.get("source"),
        dup=d.get("dup") == "1", resent=d.get("resent") == "1",
        extra={k: v for k, v in d.items() if k not in {"kind", "content-type", "received-at-us", "source", "dup", "resent"}},
    )


def decode_frame_record(value: bytes, headers: Any = ()) -> tuple[Frame, RecordMeta]:
    return decode_frame(value), parse_headers(headers)


def decode_telemetry_record(value: bytes, headers: Any = ()) -> tuple[Telemetry, RecordMeta]:
    return decode_telemetry(value), parse_headers(headers)


def decode_event_record(value: bytes, headers: Any = ()):
    return decode_event(value), parse_headers(headers)


def decode_record(value: bytes, headers: Any = ()) -> tuple[Frame | Telemetry | BaseModel, RecordMeta]:
    """Decode any raw record by its ``kind`` header (falls back to sniffing the magic)."""
    meta = parse_headers(headers)
    kind = meta.kind or (KIND_FRAME if value[:4] == MAGIC else "")
    if kind == KIND_FRAME:
        return decode_frame(value), meta
    if kind == KIND_TELEMETRY:
        return decode_telemetry(value), meta
    if kind == KIND_EVENT:
        return decode_event(value), meta
    obj = parse_json(value)
    if isinstance(obj, dict) and obj.get("kind") == "telemetry":
        return telemetry_from_json(obj), meta
    return event_from_json(obj), meta

"""PostgreSQL binary COPY encoding for the envelope rows, with numpy.

psycopg's `write_row` converts arrays element by element in Python; an envelope frame
holds tens to hundreds of floats, so the sink builds the binary COPY stream itself:
the float4 array body is one numpy structured-array `tobytes()` per frame.
Format: https://www.postgresql.org/docs/current/sql-copy.html (binary format) and
array_send (ndim, has-null flag, element oid, per dimension size and lower bound,
then per element length + value, all big-endian).
"""

from __future__ import annotations

import math
import struct
import uuid
from datetime import datetime, timedelta, timezone

import numpy as np

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
TRAILER = struct.pack("!h", -1)
FLOAT4_OID = 700
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)
_NULL = struct.pack("!i", -1)
_FIELD_TS = struct.Struct("!iq")  # len 8, int64 µs since 2000-01-01
_FIELD_I8 = struct.Struct("!iq")
_FIELD_I4 = struct.Struct("!ii")
_FIELD_F4 = struct.Struct("!if")
_FIELD_BOOL = struct.Struct("!i?")
_ARR2_HDR = struct.Struct("!iiiiiiii")   # len, ndim, flags, oid, dim1, lb1, dim2, lb2
_ARR1_HDR = struct.Struct("!iiiiii")     # len, ndim, flags, oid, dim1, lb1
_ELEM = np.dtype([("len", ">i4"), ("val", ">f4")])


class EncodeError(ValueError):
    """A value that has no binary COPY form in its column type (out of range, wrong type).

    The record carrying it can never be stored: the sink dead-letters it.
    """


_INT_LIMITS = {"int2": 2 ** 15, "int4": 2 ** 31, "int8": 2 ** 63}
_FLOAT4_MAX = float(np.finfo(np.float32).max)


def value_checker(copy_type: str):
    """A function that raises :class:`EncodeError` for a value a column of ``copy_type``
    cannot hold, or None when every value of the Python type fits.

    Needed because psycopg's binary dumpers do not all refuse such values: an int2 of
    40000 is silently sent as -25536, a float4 of 1e300 as infinity.
    """
    if copy_type in _INT_LIMITS:
        limit = _INT_LIMITS[copy_type]

        def check_int(v) -> None:
            if v is not None and not -limit <= v < limit:
                raise EncodeError(f"{v!r} out of {copy_type} range")
        return check_int
    if copy_type == "float4":
        def check_float(v) -> None:
            if v is not None and math.isfinite(v) and abs(v) > _FLOAT4_MAX:
                raise EncodeError(f"{v!r} out of float4 range")
        return check_float
    if copy_type == "float4[]":
        def check_floats(vs) -> None:
            for v in vs or ():
                if v is not None and math.isfinite(v) and abs(v) > _FLOAT4_MAX:
                    raise EncodeError(f"{v!r} out of float4 range")
        return check_floats
    return None


def pg_timestamp(dt: datetime) -> int:
    """Microseconds since 2000-01-01 UTC (PostgreSQL's timestamptz binary value)."""
    return (dt - _PG_EPOCH) // _US


def ts_field(dt: datetime) -> bytes:
    return _FIELD_TS.pack(8, pg_timestamp(dt))


def text_field(s: str) -> bytes:
    b = s.encode()
    return struct.pack("!i", len(b)) + b


def uuid_field(u: uuid.UUID | None) -> bytes:
    return _NULL if u is None else struct.pack("!i", 16) + u.bytes


def float4_array_field(a: np.ndarray) -> bytes:
    """A 1-D or 2-D float4 array (no NULLs) as one binary COPY field."""
    flat = np.empty(a.size, dtype=_ELEM)
    flat["len"] = 4
    flat["val"] = a.reshape(-1)
    body = flat.tobytes()
    if a.ndim == 2:
        hdr_len = 12 + 16
        return _ARR2_HDR.pack(hdr_len + len(body), 2, 0, FLOAT4_OID, a.shape[0], 1, a.shape[1], 1) + body
    if a.ndim == 1:
        hdr_len = 12 + 8
        return _ARR1_HDR.pack(hdr_len + len(body), 1, 0, FLOAT4_OID, a.shape[0], 1) + body
    raise ValueError("only 1-D and 2-D arrays")


# envelope staging columns, in this order
ENVELOPE_COLUMNS = ("time", "device_id", "seq", "session_id", "fs_hz", "env", "clipped", "stim_blanked")


def envelope_row(time: datetime, device_id: str, seq: int, session_id: uuid.UUID | None, fs_hz: float,
                 env: np.ndarray, clipped: int, stim_blanked: bool) -> bytes:
    """One envelope row; :class:`EncodeError` for a value its column cannot hold.

    ``fs_hz`` must be finite and > 0: the column's ``check (fs_hz > 0)`` lets NaN
    through (PostgreSQL orders NaN above every number), and every sample time
    derives from it.
    """
    try:
        rate_ok = math.isfinite(fs_hz) and fs_hz > 0
    except TypeError:
        rate_ok = False
    if not rate_ok:
        raise EncodeError(f"envelope fs_hz {fs_hz!r} is not a finite positive rate")
    try:
        return _envelope_row(time, device_id, seq, session_id, fs_hz, env, clipped, stim_blanked)
    except (struct.error, OverflowError, TypeError, ValueError, UnicodeError) as exc:
        raise EncodeError(f"envelope seq={seq!r} clipped={clipped!r}: {type(exc).__name__}: {exc}") from None


def _envelope_row(time: datetime, device_id: str, seq: int, session_id: uuid.UUID | None, fs_hz: float,
                  env: np.ndarray, clipped: int, stim_blanked: bool) -> bytes:
    return b"".join((
        struct.pack("!h", 8),
        ts_field(time),
        text_field(device_id),
        _FIELD_I8.pack(8, seq),
        uuid_field(session_id),
        _FIELD_F4.pack(4, fs_hz),
        float4_array_field(env),
        _FIELD_I4.pack(4, clipped),
        _FIELD_BOOL.pack(1, stim_blanked),
    ))


# one row per channel and frame (the layout we measured against; see bench.py)
CHANNEL_ROW_COLUMNS = ("time", "device_id", "channel", "seq", "session_id", "fs_hz", "env")


def channel_row(time: datetime, device_id: str, channel: int, seq: int, session_id: uuid.UUID | None,
                fs_hz: float, env: np.ndarray) -> bytes:
    return b"".join((
        struct.pack("!h", 7),
        ts_field(time),
        text_field(device_id),
        struct.pack("!ih", 2, channel),
        _FIELD_I8.pack(8, seq),
        uuid_field(session_id),
        _FIELD_F4.pack(4, fs_hz),
        float4_array_field(env),
    ))

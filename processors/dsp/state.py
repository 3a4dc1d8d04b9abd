"""Compact binary form of the plain-dict states (`to_state()`), for changelog-backed tables.

`to_state()` dicts are already JSON/msgpack-safe and exact (floats as Python floats).
`pack_state` stores the same dict with every numeric array as raw little-endian
float64 (about half the size of JSON, and exact); `unpack_state` returns an equal dict.
Layout: b"MDS1" | uint32 header length | JSON header | float64 data.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np

MAGIC = b"MDS1"


def _is_numeric_array(v: Any) -> bool:
    if not isinstance(v, list) or not v:
        return False
    try:
        a = np.asarray(v)
    except ValueError:
        return False
    return a.dtype.kind == "f" and a.size >= 4


def pack_state(state: dict[str, Any]) -> bytes:
    chunks: list[np.ndarray] = []
    offset = 0

    def enc(v: Any) -> Any:
        nonlocal offset
        if isinstance(v, dict):
            return {k: enc(x) for k, x in v.items()}
        if _is_numeric_array(v):
            a = np.asarray(v, dtype="<f8")
            chunks.append(a.reshape(-1))
            ref = {"__f8__": offset, "shape": list(a.shape)}
            offset += a.size
            return ref
        if isinstance(v, list):
            return [enc(x) for x in v]
        return v

    header = json.dumps(enc(state), separators=(",", ":")).encode()
    data = np.concatenate(chunks).tobytes() if chunks else b""
    return MAGIC + struct.pack("<I", len(header)) + header + data


def unpack_state(blob: bytes) -> dict[str, Any]:
    if blob[:4] != MAGIC:
        raise ValueError("not a packed mimetic DSP state")
    (n,) = struct.unpack("<I", blob[4:8])
    header = json.loads(blob[8:8 + n])
    data = np.frombuffer(blob[8 + n:], dtype="<f8")

    def dec(v: Any) -> Any:
        if isinstance(v, dict):
            if "__f8__" in v:
                size = int(np.prod(v["shape"])) if v["shape"] else 1
                return data[v["__f8__"]:v["__f8__"] + size].reshape(v["shape"]).tolist()
            return {k: dec(x) for k, x in v.items()}
        if isinstance(v, list):
            return [dec(x) for x in v]
        return v

    return dec(header)

"""The derived-record contract: round trips, validation, headers, natural keys (no services)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import msgspec
import numpy as np
import pytest

from processors import records as r

from .helpers import mixed_records

T = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


def test_every_kind_round_trips_with_its_kind_header() -> None:
    recs = mixed_records("dev-rt-1", 40, uuid.uuid4())
    kinds = {r.kind_of(x) for x in recs}
    assert kinds == set(r.RECORD_TYPES)
    for rec in recs:
        key, value, headers = r.to_message(rec)
        assert key == b"dev-rt-1"
        assert dict(headers) == {"kind": r.kind_of(rec).encode(), "schema": str(r.SCHEMA_VERSION).encode()}
        back = r.decode(value)
        assert back == rec and type(back) is type(rec)
        assert back.natural_key() == rec.natural_key()
        assert r.TOPIC_OF_KIND[r.kind_of(rec)].startswith("derived.")


def test_envelope_is_compact_float32_channels_by_samples() -> None:
    arr = np.arange(16, dtype=np.float64).reshape(8, 2) * 1.5
    f = r.EnvelopeFrame.from_array(arr, device_id="dev-1", seq=7, time=T, fs_hz=40.0)
    assert f.n_channels == 8 and len(f.env) == 16 * 4
    assert np.array_equal(r.decode(r.encode(f)).array, arr.astype(np.float32))
    assert len(r.encode(f)) < 200
    assert r.sample_times(f) == [T, T + timedelta(seconds=0.025)]


@pytest.mark.parametrize("payload", [
    b"", b"\x00", b"\x93\x01\x02\x03", msgspec.msgpack.encode({"kind": "nope"}),
    msgspec.msgpack.encode({"kind": "balance", "device_id": "d"}),                     # missing fields
    msgspec.msgpack.encode({"kind": "envelope", "device_id": "d", "seq": 1, "time": T, "fs_hz": 40.0,
                            "n_channels": 3, "env": b"\x00" * 16}),                      # 4 floats / 3 ch
    msgspec.msgpack.encode({"kind": "alert", "alert_id": "a", "device_id": "d", "alert_type": "x",
                            "severity": "fatal", "state": "raised", "time": T, "raised_at": T}),
])
def test_bad_payloads_raise_decode_error(payload: bytes) -> None:
    with pytest.raises(r.DecodeError):
        r.decode(payload)


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError):
        r.encode(r.StreamStats(device_id="d", time=datetime(2026, 1, 1), window_s=1.0))


def test_alert_ids_are_deterministic_per_episode() -> None:
    a = r.alert_id("dev-1", "impedance", T, channel=2)
    assert a == r.alert_id("dev-1", "impedance", T, channel=2)
    assert a != r.alert_id("dev-1", "impedance", T + timedelta(seconds=1), channel=2)
    assert a != r.alert_id("dev-1", "impedance", T, channel=3)
    assert a.startswith("impedance-")


def test_unknown_extra_fields_are_tolerated_for_forward_compatibility() -> None:
    rec = r.StreamStats(device_id="d", time=T, window_s=1.0, frames=3)
    raw = msgspec.msgpack.decode(r.encode(rec))
    raw["added_in_a_later_version"] = 1
    assert r.decode(msgspec.msgpack.encode(raw)) == rec

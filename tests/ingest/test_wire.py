"""Wire format: round trips, every rejection reason, and a fuzz of the decoder."""

from __future__ import annotations

import json
import struct
import uuid
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from ingest import wire
from ingest.wire import Frame, WireError

T0 = 1_767_225_600_000_000


def make_frame(**kw) -> Frame:
    rng = np.random.default_rng(kw.pop("seed", 0))
    nch, ns = kw.pop("shape", (8, 100))
    base = dict(device_id="dev-01", seq=42, t_us=T0, fs_hz=2000, scale_uv=0.1,
                samples=rng.integers(-32768, 32767, size=(nch, ns), dtype=np.int16),
                session_id=uuid.UUID(int=7), stim_active=True)
    base.update(kw)
    return Frame(**base)


def reseal(b: bytes) -> bytes:
    """Recompute the CRC after tampering with a frame's body."""
    body = b[:-4]
    return body + struct.pack("<I", zlib.crc32(body))


def test_binary_round_trip_and_layout():
    f = make_frame()
    b = wire.encode_frame(f)
    assert len(b) == wire.HEADER_SIZE + len("dev-01") + 2 * 8 * 100 + 4
    assert b[:4] == b"MEMG" and b[4] == 1 and b[5] == wire.FLAG_STIM_ACTIVE
    g = wire.decode_frame(b, expected_device="dev-01")
    assert g == f and g.samples.shape == (8, 100)
    # channel-major: channel 1 starts right after the 100 samples of channel 0
    off = wire.HEADER_SIZE + 6
    assert np.frombuffer(b, "<i2", 100, off + 200).tolist() == f.samples[1].tolist()
    assert wire.encode_frame(g) == b  # canonical
    assert np.allclose(g.microvolts(), f.samples * np.float32(0.1))


def test_json_round_trip_equals_binary():
    f = make_frame(session_id=None, stim_active=False, shape=(2, 5))
    j = wire.encode_frame_json(f)
    g = wire.decode_frame_json(j, expected_device="dev-01")
    assert g == f
    assert wire.encode_frame(g) == wire.encode_frame(f)


@pytest.mark.parametrize(
    "mutate, reason, status",
    [
        (lambda b: b[:30], "truncated", 400),
        (lambda b: b[:-10], "truncated", 400),
        (lambda b: b"XXXX" + b[4:], "bad_magic", 400),
        (lambda b: reseal(b[:4] + b"\x02" + b[5:]), "unsupported_version", 422),
        (lambda b: reseal(b[:-4] + b"\x00\x00" + b"CRC!"), "count_mismatch", 400),
        (lambda b: b[:60] + bytes([b[60] ^ 1]) + b[61:], "bad_crc", 400),
        (lambda b: reseal(b[:24] + struct.pack("<I", 50) + b[28:]), "bad_rate", 422),
        (lambda b: reseal(b[:24] + struct.pack("<I", 100_000) + b[28:]), "bad_rate", 422),
        (lambda b: reseal(b[:32] + struct.pack("<f", float("nan")) + b[36:]), "nan", 422),
        (lambda b: reseal(b[:5] + b"\x80" + b[6:]), "bad_flags", 422),
    ],
)
def test_binary_rejections(mutate, reason, status):
    b = wire.encode_frame(make_frame())
    with pytest.raises(WireError) as ei:
        wire.decode_frame(mutate(b))
    assert (ei.value.reason, ei.value.status) == (reason, status)


def test_limits_and_device_mismatch():
    with pytest.raises(WireError) as ei:
        wire.decode_frame(wire.encode_frame(make_frame()), expected_device="other-dev")
    assert ei.value.reason == "device_id_mismatch"
    with pytest.raises(WireError) as ei:
        wire.encode_frame(make_frame(shape=(65, 10)))
    assert ei.value.reason == "too_many_channels"
    with pytest.raises(WireError) as ei:
        wire.encode_frame(make_frame(shape=(1, 2001)))
    assert ei.value.reason == "too_many_samples"


@pytest.mark.parametrize(
    "patch, reason",
    [
        ({"samples": [[1, 2], [3]]}, "count_mismatch"),
        ({"n_samples": 3}, "count_mismatch"),
        ({"fs_hz": 20}, "bad_rate"),
        ({"v": 2}, "unsupported_version"),
        ({"samples": [[1, 2.5], [3, 4]]}, "bad_samples"),
        ({"samples": [[1, 40000], [3, 4]]}, "sample_out_of_range"),
        ({"device_id": "someone-else"}, "device_id_mismatch"),
        ({"extra": 1}, "unknown_field"),
    ],
)
def test_json_rejections(patch, reason):
    obj = make_frame(shape=(2, 2)).to_json()
    obj.update(patch)
    with pytest.raises(WireError) as ei:
        wire.decode_frame_json(json.dumps(obj), expected_device="dev-01")
    assert ei.value.reason == reason


def test_json_nan_and_syntax():
    s = json.dumps(make_frame(shape=(1, 2)).to_json()).replace("[[", "[[NaN, ").replace("]]", "]]")
    with pytest.raises(WireError) as ei:
        wire.decode_frame_json(s)
    assert ei.value.reason == "nan" and ei.value.status == 422
    with pytest.raises(WireError) as ei:
        wire.decode_frame_json(b"{not json")
    assert ei.value.reason == "bad_json" and ei.value.status == 400


def _start(**kw):
    d = {"type": "session_start", "seq": 1, "t_us": T0, "session_id": str(uuid.UUID(int=1)),
         "therapy_type": "microcurrent", "fs_hz": 2000,
         "channel_map": [{"channel": 0, "muscle": "zygomaticus", "side": "L"},
                         {"channel": 1, "muscle": "zygomaticus", "side": "R"}],
         "stimulation": {"current_limit_ua": 300, "current_ua": 200, "frequency_hz": 20, "pulse_width_us": 200}}
    d.update(kw)
    return d


def test_events_and_telemetry_round_trip():
    ev = wire.event_from_json(_start(), expected_device="dev-01")
    assert isinstance(ev, wire.SessionStart) and ev.device_id == "dev-01"
    assert wire.decode_event(wire.encode_model(ev)) == ev
    tm = wire.telemetry_from_json({"seq": 3, "t_us": T0, "battery_pct": 80, "temperature_c": 34.1,
                                   "impedance_kohm": [10, 12.5], "stim_current_ua": 190,
                                   "signal_strength_dbm": -60, "firmware_errors": ["ADC_OVR"]}, "dev-01")
    assert wire.decode_telemetry(wire.encode_model(tm)) == tm
    for ev in ({"type": "task_start", "seq": 2, "t_us": T0, "session_id": str(uuid.UUID(int=1)),
                "task": "smile", "repetition": 1},
               {"type": "patient_report", "seq": 3, "t_us": T0, "session_id": str(uuid.UUID(int=1)),
                "discomfort": 3, "skin_reaction": "redness"},
               {"type": "session_end", "seq": 4, "t_us": T0, "session_id": str(uuid.UUID(int=1))}):
        e = wire.event_from_json(ev, "dev-01")
        k, v, h = wire.encode_record(e, source="test")
        got, meta = wire.decode_record(v, h)
        assert got == e and k == b"dev-01" and meta.kind == "event"


@pytest.mark.parametrize(
    "patch, reason",
    [
        ({"therapy_type": "voodoo"}, "invalid_event"),
        ({"stimulation": None}, "invalid_event"),
        ({"channel_map": [{"channel": 0, "muscle": "zygomaticus", "side": "L"},
                          {"channel": 0, "muscle": "zygomaticus", "side": "R"}]}, "invalid_event"),
        ({"channel_map": [{"channel": 0, "muscle": "biceps", "side": "L"}]}, "invalid_event"),
        ({"stimulation": {"current_limit_ua": 100, "current_ua": 200, "frequency_hz": 20,
                          "pulse_width_us": 200}}, "invalid_event"),
        ({"device_id": "nope-dev"}, "device_id_mismatch"),
    ],
)
def test_event_rejections(patch, reason):
    with pytest.raises(WireError) as ei:
        wire.event_from_json(_start(**patch), "dev-01")
    assert ei.value.reason == reason


def test_telemetry_rejections():
    for bad in ({"battery_pct": 120}, {"impedance_kohm": [-1]}, {"stim_current_ua": "lots"}, {"bogus": 1}):
        with pytest.raises(WireError) as ei:
            wire.telemetry_from_json({"seq": 1, "t_us": T0, **bad}, "dev-01")
        assert ei.value.status == 422
    with pytest.raises(WireError) as ei:
        wire.decode_telemetry(b'{"seq": 1, "t_us": %d, "temperature_c": NaN}' % T0, "dev-01")
    assert ei.value.reason == "nan"


def test_record_headers_round_trip():
    f = make_frame(resent=True)
    k, v, h = wire.encode_record(f, source="http", received_at_us=123, dup=True)
    got, meta = wire.decode_frame_record(v, h)
    assert got == f and k == b"dev-01"
    assert (meta.kind, meta.source, meta.received_at_us, meta.dup, meta.resent) == ("frame", "http", 123, True, True)
    assert meta.content_type == "application/x-mimetic-frame;v=1"


# --- fuzz -----------------------------------------------------------------------

VALID = wire.encode_frame(make_frame(shape=(4, 20)))


def _check_decoder(data: bytes) -> None:
    try:
        f = wire.decode_frame(data)
    except WireError as exc:
        assert exc.status in (400, 422) and exc.reason
        return
    # anything accepted re-validates and re-encodes to the same bytes
    assert wire.encode_frame(f) == bytes(data)


@hsettings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_fuzz_random_bytes(data):
    _check_decoder(data)
    _check_decoder(VALID[:4] + data)
    try:
        wire.decode_frame_json(data)
    except WireError:
        pass


@hsettings(max_examples=2500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=6),
       st.integers(0, len(VALID)), st.booleans())
def test_fuzz_mutated_frames(edits, cut, fix_crc):
    b = bytearray(VALID)
    for pos, val in edits:
        b[pos] = val
    b = bytes(b[: max(cut, 1)]) if cut < len(VALID) else bytes(b)
    if fix_crc and len(b) > 4:
        b = reseal(b)
    _check_decoder(b)


@hsettings(max_examples=800, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.sampled_from(
                        ["v", "seq", "t_us", "fs_hz", "samples", "scale_uv", "device_id", "type", "task",
                         "session_id", "battery_pct", "impedance_kohm"]), c, max_size=6), max_leaves=20))
def test_fuzz_json_structures(obj):
    for fn in (wire.frame_from_json, wire.telemetry_from_json, wire.event_from_json):
        try:
            fn(obj, "dev-01")
        except WireError as exc:
            assert exc.status in (400, 422)


def test_encode_reuses_decoded_bytes_only_when_unchanged():
    b = wire.encode_frame(make_frame())
    f = wire.decode_frame(b)
    assert wire.encode_frame(f) is f.raw
    f.seq = 43
    g = wire.decode_frame(wire.encode_frame(f))
    assert g.seq == 43 and g.samples.tolist() == f.samples.tolist()
    h = wire.decode_frame(b)
    h.samples = h.samples.copy()
    h.samples[0, 0] ^= 1
    assert wire.decode_frame(wire.encode_frame(h)).samples[0, 0] == h.samples[0, 0]


def test_headers_as_mapping():
    _, v, h = wire.encode_record(make_frame(), source="ws", dup=True)
    meta = wire.parse_headers(dict(h))
    assert meta.dup and meta.source == "ws" and meta.kind == "frame"


@pytest.mark.parametrize("scale_uv", [wire.SCALE_MIN_UV, wire.SCALE_MAX_UV])
def test_a_frame_encoded_at_the_scale_limits_decodes(scale_uv: float) -> None:
    """The header carries scale_uv as float32; 1e-4 rounds below 1e-4 and was refused on decode."""
    frame = wire.decode_frame(wire.encode_frame(make_frame(scale_uv=scale_uv)))
    assert frame.scale_uv == pytest.approx(scale_uv, rel=1e-6)


# --- numeric bounds: everything downstream can hold ------------------------------------------


def test_seq_is_bounded_to_a_signed_64_bit_integer_in_every_form():
    top = make_frame(seq=wire.SEQ_MAX)
    assert wire.decode_frame(wire.encode_frame(top)).seq == wire.SEQ_MAX
    assert wire.decode_frame_json(wire.encode_frame_json(top)).seq == wire.SEQ_MAX
    b = wire.encode_frame(make_frame())
    for seq in (2**63, 2**64 - 1):  # the uint64 header field holds them; the pipeline does not
        with pytest.raises(WireError) as ei:
            wire.decode_frame(reseal(b[:8] + struct.pack("<Q", seq) + b[16:]))
        assert (ei.value.reason, ei.value.status) == ("bad_seq", 422)
        obj = make_frame(shape=(1, 2)).to_json()
        obj["seq"] = seq
        with pytest.raises(WireError) as ei:
            wire.decode_frame_json(json.dumps(obj))
        assert (ei.value.reason, ei.value.status) == ("bad_seq", 422)
        for decode, body in ((wire.telemetry_from_json, {"seq": seq, "t_us": T0}),
                             (wire.event_from_json, _start(seq=seq))):
            with pytest.raises(WireError) as ei:
                decode(body, "dev-01")
            assert ei.value.status == 422 and "seq" in ei.value.detail
    assert wire.telemetry_from_json({"seq": wire.SEQ_MAX, "t_us": T0}, "dev-01").seq == wire.SEQ_MAX


@pytest.mark.parametrize(
    "body",
    [
        {"battery_pct": 100.5}, {"battery_pct": -0.1}, {"temperature_c": 81}, {"temperature_c": -21},
        {"impedance_kohm": [100_001]}, {"impedance_kohm": [1.0] * 65}, {"stim_current_ua": 10_001},
        {"stim_current_ua": -1}, {"signal_strength_dbm": 21}, {"signal_strength_dbm": -151},
        {"firmware_errors": ["x" * 65]}, {"firmware_errors": ["E"] * 33}, {"t_us": 2**63},
        {"t_us": -1}, {"seq": -1}, {"battery_pct": 1e400},
    ],
)
def test_every_telemetry_number_is_bounded(body):
    with pytest.raises(WireError) as ei:
        wire.telemetry_from_json({"seq": 1, "t_us": T0, **body}, "dev-01")
    assert ei.value.status == 422


@pytest.mark.parametrize(
    "patch",
    [
        {"type": "patient_report", "discomfort": 11}, {"type": "patient_report", "discomfort": -1},
        {"type": "task_start", "task": "smile", "repetition": 0},
        {"type": "task_start", "task": "smile", "repetition": 10_001},
    ],
)
def test_every_event_number_is_bounded(patch):
    body = {"seq": 1, "t_us": T0, "session_id": str(uuid.UUID(int=1)), **patch}
    with pytest.raises(WireError) as ei:
        wire.event_from_json(body, "dev-01")
    assert ei.value.status == 422
    for stim in ({"current_limit_ua": 5001, "current_ua": 1, "frequency_hz": 20, "pulse_width_us": 200},
                 {"current_limit_ua": 300, "current_ua": 200, "frequency_hz": 1001, "pulse_width_us": 200},
                 {"current_limit_ua": 300, "current_ua": 200, "frequency_hz": 20, "pulse_width_us": 100_001}):
        with pytest.raises(WireError) as ei:
            wire.event_from_json(_start(stimulation=stim), "dev-01")
        assert ei.value.status == 422
    with pytest.raises(WireError):
        wire.event_from_json(_start(fs_hz=10_001), "dev-01")


def test_frame_timestamps_outside_the_format_range_are_refused():
    b = wire.encode_frame(make_frame())
    for t_us in (wire.T_MIN_US - 1, wire.T_MAX_US, -(2**63)):
        with pytest.raises(WireError) as ei:
            wire.decode_frame(reseal(b[:16] + struct.pack("<q", t_us) + b[24:]))
        assert (ei.value.reason, ei.value.status) == ("bad_timestamp", 422)


# --- the device-clock rule ----------------------------------------------------------------------


def test_device_clock_rule():
    rx = T0
    for t_us in (rx, rx + 300_000_000, rx - 7 * 86_400_000_000, rx - 3600_000_000):
        wire.check_device_clock(t_us, rx, 300.0, 7 * 86400.0)  # inside: no error
    for t_us, reason in ((rx + 300_000_001, "clock_future"), (rx + 75 * 365 * 86_400_000_000, "clock_future"),
                         (rx - 7 * 86_400_000_001, "clock_past"), (wire.T_MIN_US, "clock_past")):
        with pytest.raises(WireError) as ei:
            wire.check_device_clock(t_us, rx, 300.0, 7 * 86400.0)
        assert (ei.value.reason, ei.value.status) == (reason, 422)
        assert "receive time" in ei.value.detail


def test_received_at_header_is_bounded():
    assert wire.parse_headers([("received-at-us", b"1" * 18)]).received_at_us == int("1" * 18)
    for bad in (b"1" * 19, b"9" * 5000, "١٢٣".encode(), b"-5", b""):
        assert wire.parse_headers([("received-at-us", bad)]).received_at_us is None

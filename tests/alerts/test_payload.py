"""The pure parts of alert delivery: body, signature, back-off, audience."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from alerts.payload import backoff_s, body, idempotency_key, notice_payload, sign, verify
from processors.alerting import PATIENT_SAFETY_TYPES, audience_of
from processors.records import ALERT_TYPES

from .conftest import alert


def test_body_is_canonical_json_identical_across_attempts() -> None:
    rec = alert("dev-001", "over_current", 7, severity="critical")   # value NaN
    p = notice_payload(rec, "clinic-a")
    b1, b2 = body(p, "audience"), body(notice_payload(rec, "clinic-a"), "audience")
    assert b1 == b2 and b"\": " not in b1 and b", \"" not in b1
    doc = json.loads(b1)
    assert doc["idempotency_key"] == idempotency_key(rec.alert_id, "raised") == f"{rec.alert_id}:raised"
    assert doc["value"] is None and doc["threshold"] == 600.0   # NaN is not JSON: sent as null
    assert doc["audience"] == "clinic" and doc["clinic_id"] == "clinic-a" and doc["reason"] == "audience"
    assert doc["time"].endswith("Z") and doc["severity"] == "critical"
    assert body(p, "escalation") != b1


def test_signature_verifies_only_the_same_bytes_and_secret() -> None:
    data = body(notice_payload(alert("dev-001", "electrode_off", 1), None), "audience")
    sig = sign("s3cret", data)
    assert sig.startswith("sha256=") and len(sig) == 7 + 64
    assert verify("s3cret", data, sig)
    assert not verify("other", data, sig)
    assert not verify("s3cret", data + b" ", sig)
    assert not verify("s3cret", data, None)


@given(st.integers(min_value=-5, max_value=10**9), st.floats(0.01, 10), st.floats(0.01, 1000))
def test_backoff_doubles_and_is_capped(attempts: int, base: float, cap: float) -> None:
    w = backoff_s(attempts, base, cap)
    assert 0 < w <= cap and w <= max(base, cap)
    assert backoff_s(attempts + 1, base, cap) >= w


def test_every_alert_type_has_an_audience() -> None:
    assert PATIENT_SAFETY_TYPES <= set(ALERT_TYPES)
    for t in ALERT_TYPES:
        assert audience_of(t) == ("clinic" if t in ("over_current", "discomfort", "skin_reaction") else "operators")


def test_delivery_latency_counts_from_the_transition_and_never_below_zero() -> None:
    from datetime import datetime, timedelta, timezone

    from alerts.notifier import delivery_latency_s

    t = datetime(2026, 12, 1, 8, 0, tzinfo=timezone.utc)
    payload = notice_payload(alert("dev-1", "over_current", 1), None) | {"time": "2026-12-01T08:00:00Z"}
    assert delivery_latency_s(payload, t + timedelta(seconds=2.5)) == 2.5
    assert delivery_latency_s(payload, t - timedelta(seconds=3)) == 0.0  # the device clock was ahead

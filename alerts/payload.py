"""What a receiver gets (pure): the notification body, its signature, the back-off.

Webhook request
---------------
``POST <url>`` with ``Content-Type: application/json`` and

* ``Idempotency-Key: <alert_id>:<state>``: the same for every attempt of one raise or
  clear; a receiver that has seen it already answers 2xx and drops the repeat (a repeat
  happens only when the notifier crashed between the send and recording it).
* ``X-Mimetic-Signature: sha256=<hex>``: HMAC-SHA256 of the raw body bytes under the
  receiver's secret (shown once by ``mimetic notify receivers add``). Verify it on the
  bytes as received, before parsing, with a constant-time compare (:func:`verify`).

The body is canonical JSON (sorted keys, no spaces), byte-identical across attempts.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from datetime import datetime
from typing import Any

from processors import records as r
from processors.alerting import audience_of

SIGNATURE_HEADER = "X-Mimetic-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_MESSAGE_CHARS = 2000


def idempotency_key(alert_id: str, state: str) -> str:
    return f"{alert_id}:{state}"


def _num(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def notice_payload(rec: r.AlertRecord, clinic_id: str | None) -> dict[str, Any]:
    """The body of one raise/clear (without the delivery reason), JSON-ready.

    Only fields from the record and the device's clinic: a replayed record gives the same body.
    """
    return {
        "idempotency_key": idempotency_key(rec.alert_id, rec.state),
        "alert_id": rec.alert_id, "state": rec.state, "alert_type": rec.alert_type,
        "severity": rec.severity, "audience": audience_of(rec.alert_type),
        "device_id": rec.device_id, "clinic_id": clinic_id,
        "session_id": str(rec.session_id) if rec.session_id else None,
        "channel": rec.channel, "time": _iso(rec.time), "raised_at": _iso(rec.raised_at),
        "value": _num(rec.value), "threshold": _num(rec.threshold),
        "message": rec.message[:MAX_MESSAGE_CHARS],
    }


def body(payload: dict[str, Any], reason: str) -> bytes:
    """Canonical JSON bytes of a delivery: the notice plus why this receiver gets it."""
    return json.dumps(payload | {"reason": reason}, sort_keys=True, separators=(",", ":"),
                      allow_nan=False).encode()


def sign(secret: str, data: bytes) -> str:
    """Value of the signature header for ``data``."""
    return "sha256=" + hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()


def verify(secret: str, data: bytes, header: str | None) -> bool:
    """Receiver side: is ``header`` the signature of ``data``? (constant-time)"""
    return header is not None and hmac.compare_digest(sign(secret, data), header)


def backoff_s(attempts: int, base_s: float, max_s: float) -> float:
    """Wait before retry number ``attempts`` (1, 2, ...): base * 2^(attempts-1), capped at max_s."""
    n = max(0, min(attempts - 1, 60))   # 2^60 is past any cap: no overflow, no huge numbers
    return min(max_s, base_s * (2.0 ** n))


def email_subject(payload: dict[str, Any]) -> str:
    sev = str(payload.get("severity", "")).upper()
    what = str(payload.get("alert_type", "")).replace("_", " ")
    return f"[mimetic {sev}] {what} {payload.get('state')} on {payload.get('device_id')}"


def email_text(payload: dict[str, Any], reason: str) -> str:
    lines = [str(payload.get("message", "")), ""]
    for k in ("alert_id", "alert_type", "severity", "state", "device_id", "clinic_id", "session_id",
              "channel", "raised_at", "time", "value", "threshold"):
        lines.append(f"{k}: {payload.get(k)}")
    if reason == "escalation":
        lines += ["", "Escalated: not acknowledged in time by the first receivers."]
    lines += ["", "Acknowledge: mimetic alerts ack " + str(payload.get("alert_id")) + " --by NAME"]
    return "\n".join(lines) + "\n"

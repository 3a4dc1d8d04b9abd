"""The gateway's published API: an OpenAPI 3.1 document built from the code it describes.

One source of truth: request schemas come from :mod:`ingest.wire` (the pydantic
models of telemetry and events, the wire limits of frames, the binary layout quoted
from its docstring), limits from :class:`mimetic.config.Settings` defaults.
Served at ``GET /v1/openapi.json`` (no authentication); `mimetic gateway --openapi`
prints it. A test keeps its paths equal to the app's routes.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from pydantic import TypeAdapter

from ingest import wire
from mimetic.domain import MUSCLES, TASKS, THERAPY_TYPES

REF = "#/components/schemas/{model}"
DEVICE_PATHS = ("frames", "telemetry", "events")

_STATUS = {
    "202": "Accepted: Kafka acknowledged the record (acks=all). Only then.",
    "400": "Unparseable body for the claimed format (`truncated`, `bad_magic`, `bad_crc`, `count_mismatch`, "
           "`bad_json`, `empty_body`, `bad_request` for a malformed HTTP request ...).",
    "401": "`missing_credentials`, or `unauthorized`: an unknown device OR a wrong secret (one answer for "
           "both, so device ids cannot be probed).",
    "403": "`device_revoked`: the secret is right but the device's credentials were revoked.",
    "408": "`body_timeout`: the body did not arrive within GATEWAY_BODY_TIMEOUT_S; the connection is closed.",
    "413": "`body_too_large`: over GATEWAY_MAX_BODY_BYTES / GATEWAY_MAX_JSON_BYTES, or over what the device's "
           "registered channel count and rate can need (binary: 56+L+2*C*N bytes; JSON: 2048 + 8 bytes per "
           "sample), or over Kafka's record size.",
    "415": "`unsupported_media_type`.",
    "422": "Parses but a value is unacceptable (`unsupported_version`, `nan`, `bad_rate`, `too_many_channels`, "
           "`device_id_mismatch`, `channel_count_mismatch`, `rate_mismatch`, `invalid_telemetry`, "
           "`invalid_event` ...).",
    "426": "`upgrade_required`: the stream route needs a WebSocket handshake.",
    "429": "`rate_limited` (records/s), `byte_rate_limited` (bytes/s), `too_many_failures` (failed "
           "authentications of this address or device id), `too_many_streams` (open WebSockets of this "
           "device). Retry after `Retry-After` seconds.",
    "503": "Kafka or the registry unreachable, or too many records in flight (`kafka_unavailable`, "
           "`registry_unavailable`, `overloaded`). Retry after `Retry-After` seconds; a retried record is "
           "marked `resent`, never lost or silently merged.",
}
_RETRY = {"429", "503"}


def _binary_layout() -> str:
    doc = wire.__doc__ or ""
    start = doc.index("sEMG frame, binary")
    return doc[start:doc.index("sEMG frame, JSON", start)].strip()


def _hoist(schema: dict[str, Any], into: dict[str, Any]) -> dict[str, Any]:
    for name, sub in schema.pop("$defs", {}).items():
        into[name] = sub
    return schema


def _optional_device_id(schema: dict[str, Any]) -> dict[str, Any]:
    """Request bodies may leave device_id out (the URL's id is filled in)."""
    if "required" in schema:
        schema["required"] = [r for r in schema["required"] if r != "device_id"]
    return schema


def _frame_json_schema() -> dict[str, Any]:
    int16 = {"type": "integer", "minimum": -32768, "maximum": 32767}
    return {
        "type": "object", "additionalProperties": False,
        "description": "A frame as JSON (small devices, debugging): the binary frame's fields; `samples` one "
                       "list of int16 counts per channel. Also checked, not expressible here: all lists "
                       "equally long, at most min(8192, fs_hz) samples, `device_id` (if given) equal to the "
                       "URL's, and the channel count and rate equal to the device's registration.",
        "required": ["seq", "t_us", "fs_hz", "scale_uv", "samples"],
        "properties": {
            "v": {"const": wire.WIRE_VERSION}, "kind": {"const": wire.KIND_FRAME},
            "device_id": {"type": "string", "pattern": wire.DEVICE_ID_RE.pattern},
            "seq": {"type": "integer", "minimum": 0, "maximum": wire.SEQ_MAX},
            "t_us": {"type": "integer", "minimum": wire.T_MIN_US, "exclusiveMaximum": wire.T_MAX_US},
            "fs_hz": {"type": "integer", "minimum": wire.FS_MIN_HZ, "maximum": wire.FS_MAX_HZ},
            "scale_uv": {"type": "number", "minimum": wire.SCALE_MIN_UV, "maximum": wire.SCALE_MAX_UV},
            "session_id": {"anyOf": [{"type": "string", "format": "uuid"}, {"type": "null"}]},
            "stim_active": {"type": "boolean"}, "resent": {"type": "boolean"},
            "n_channels": {"type": "integer", "minimum": 1, "maximum": wire.MAX_CHANNELS},
            "n_samples": {"type": "integer", "minimum": 1, "maximum": wire.MAX_SAMPLES},
            "samples": {"type": "array", "minItems": 1, "maxItems": wire.MAX_CHANNELS,
                        "items": {"type": "array", "minItems": 1, "maxItems": wire.MAX_SAMPLES, "items": int16}},
        },
    }


def _responses(ok: dict[str, Any] | None, codes: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for code in codes:
        r: dict[str, Any] = {"description": _STATUS[code]}
        if code == "202" and ok is not None:
            r["content"] = {"application/json": {"schema": ok}}
        elif code not in ("101", "202"):
            r["content"] = {"application/json": {"schema": {"$ref": REF.format(model="Error")}}}
        if code in _RETRY:
            r["headers"] = {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}}
        out[code] = r
    return out


@functools.cache
def openapi_document() -> dict[str, Any]:
    from mimetic.config import Settings

    d = Settings.model_fields
    schemas: dict[str, Any] = {}
    schemas["Telemetry"] = _optional_device_id(_hoist(
        wire.Telemetry.model_json_schema(ref_template=REF, mode="validation"), schemas))
    event = _hoist(TypeAdapter(wire.Event).json_schema(ref_template=REF, mode="validation"), schemas)
    for name in ("SessionStart", "SessionEnd", "TaskMarker", "PatientReport", "ProAnswer"):
        _optional_device_id(schemas[name])
    schemas["ProAnswer"]["description"] = (
        (schemas["ProAnswer"].get("description") or "") + " Also checked, not expressible here: the score "
        "and item ranges of each instrument, and that a given score matches its items.").strip()
    schemas["Event"] = event
    # values the models check in validators, stated as enums for device makers and fuzzers
    schemas["ChannelMapEntry"]["properties"]["muscle"]["enum"] = sorted(MUSCLES)
    schemas["SessionStart"]["properties"]["therapy_type"]["enum"] = list(THERAPY_TYPES)
    schemas["TaskMarker"]["properties"]["task"]["enum"] = list(TASKS)
    schemas["SessionStart"]["description"] = (
        "Also checked, not expressible here: the channel map lists channels 0..n-1 once and each (muscle, "
        "side) once; microcurrent sessions need `stimulation`; its current is at most its limit.")
    schemas["FrameJson"] = _frame_json_schema()
    schemas["Error"] = {"type": "object", "required": ["error", "detail"],
                        "properties": {"error": {"type": "string", "description": "machine-readable reason"},
                                       "detail": {"type": "string", "description": "for humans"}}}
    schemas["Accepted"] = {
        "type": "object", "required": ["status", "kind", "seq", "dup", "resent"],
        "properties": {"status": {"const": 202}, "kind": {"enum": list(wire.KINDS)},
                       "seq": {"type": "integer"}, "dup": {"type": "boolean",
                                                           "description": "this seq was acknowledged before"},
                       "resent": {"type": "boolean", "description": "attempted before without an ack"},
                       "partition": {"type": "integer"}, "offset": {"type": "integer"}}}
    device_id = {"name": "device_id", "in": "path", "required": True,
                 "schema": {"type": "string", "pattern": wire.DEVICE_ID_RE.pattern}}
    post_codes = ("202", "400", "401", "403", "408", "413", "415", "422", "429", "503")
    accepted = {"$ref": REF.format(model="Accepted")}
    binary = {"type": "string", "format": "binary", "contentMediaType": wire.CT_FRAME}
    frames = {"post": {
        "operationId": "postFrame", "summary": "One sEMG frame (binary or JSON)",
        "description": "Binary frame layout (ingest/wire.py):\n\n```\n" + _binary_layout() + "\n```\n\n"
                       f"At most {d['gateway_max_body_bytes'].default} bytes (GATEWAY_MAX_BODY_BYTES).",
        "parameters": [device_id],
        "requestBody": {"required": True, "content": {
            wire.CT_FRAME: {"schema": binary},
            "application/octet-stream": {"schema": binary},
            wire.CT_JSON: {"schema": {"$ref": REF.format(model="FrameJson")}}}},
        "responses": _responses(accepted, post_codes)}}

    def json_post(op: str, summary: str, model: str) -> dict[str, Any]:
        return {"post": {"operationId": op, "summary": summary, "parameters": [device_id],
                         "description": f"At most {d['gateway_max_json_bytes'].default} bytes "
                                        "(GATEWAY_MAX_JSON_BYTES). Unknown fields are refused.",
                         "requestBody": {"required": True, "content": {
                             wire.CT_JSON: {"schema": {"$ref": REF.format(model=model)}}}},
                         "responses": _responses(accepted, post_codes)}}

    stream = {"get": {
        "operationId": "stream", "summary": "WebSocket stream of frames, telemetry and events",
        "description": "Upgrade to a WebSocket (Authorization on the handshake). Binary messages are binary "
                       "frames; text messages are JSON with \"kind\": frame | telemetry | event (inferred when "
                       "absent). One JSON ack per message, in order: {\"i\": n, \"kind\", \"seq\", \"status\": "
                       "202, \"dup\", \"resent\"} or {\"i\": n, \"status\": 4xx/503, \"error\", \"detail\"}. "
                       f"At most {d['gateway_ws_per_device'].default} open streams per device (another "
                       "handshake: 429 `too_many_streams`, the open ones stay); closed with 4401/4403 when "
                       f"the credentials stop being valid, 4408 after {d['gateway_ws_idle_s'].default:g} s "
                       "without a message.",
        "parameters": [device_id],
        "responses": {"101": {"description": "Switching Protocols: the stream is open."},
                      **_responses(None, ("401", "403", "426", "429", "503"))}}}
    paths = {f"/v1/devices/{{device_id}}/{p}": v for p, v in (
        ("frames", frames), ("telemetry", json_post("postTelemetry", "Device telemetry", "Telemetry")),
        ("events", json_post("postEvent", "A session event", "Event")))}
    paths["/v1/devices/{device_id}/stream"] = stream
    paths["/v1/openapi.json"] = {"get": {"operationId": "openapi", "summary": "This document", "security": [],
                                         "responses": {"200": {"description": "OpenAPI 3.1",
                                                               "content": {"application/json": {}}}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "mimetic ingest gateway", "version": str(wire.WIRE_VERSION),
                 "description": "How sEMG therapy devices send frames, telemetry and session events. Every "
                                "request carries `Authorization: Bearer <device secret>`. 202 only after "
                                "Kafka acknowledged; every 4xx stores nothing; retries are always safe "
                                "(duplicates are marked, never merged)."},
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "the device secret from `mimetic devices add`"}},
            "headers": {"RetryAfter": {"description": "seconds to wait before retrying",
                                       "schema": {"type": "string", "pattern": "^[0-9]+$"}}},
            "schemas": schemas,
        },
    }


@functools.cache
def openapi_json() -> bytes:
    return json.dumps(openapi_document(), indent=1).encode()

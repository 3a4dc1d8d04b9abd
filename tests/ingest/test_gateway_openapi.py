"""The published OpenAPI document stays in step with the gateway: its paths are the app's
routes, its JSON schemas agree with ingest.wire on examples, and the running gateway,
fuzzed from it with schemathesis, answers only documented statuses and bodies and stores
nothing it refused."""

from __future__ import annotations

import collections
import json
import uuid

import hypothesis
import jsonschema_rs
import pytest
import requests
import schemathesis
from schemathesis import checks as st_checks

from ingest import wire
from ingest.gateway.app import Gateway
from ingest.gateway.openapi import openapi_document
from mimetic.config import Settings
from tests.ingest.test_gateway import CMAP, T0, events, frame, telemetry

DOC = openapi_document()
SCHEMA = schemathesis.openapi.from_dict(DOC)
schemathesis.serializer.alias(wire.CT_FRAME, "application/octet-stream")  # binary frames: raw bytes


def _validator(name: str) -> jsonschema_rs.Draft202012Validator:
    return jsonschema_rs.Draft202012Validator({"$ref": f"#/components/schemas/{name}",
                                               "components": DOC["components"]})


def test_document_paths_are_the_app_routes():
    app = Gateway(Settings()).app()
    routes = {(r.method.lower(), r.resource.canonical) for r in app.router.routes() if r.method != "HEAD"}
    documented = {(m, p) for p, ops in DOC["paths"].items() for m in ops}
    assert routes == documented
    jsonschema_rs.Draft202012Validator({"type": "object"})  # the document's schemas compile:
    for name in DOC["components"]["schemas"]:
        _validator(name)
    for ops in DOC["paths"].values():
        for op in ops.values():
            for code, resp in op["responses"].items():
                assert resp["description"]
                if code in ("429", "503"):
                    assert "Retry-After" in resp["headers"]
    post = DOC["paths"]["/v1/devices/{device_id}/frames"]["post"]
    assert set(post["responses"]) == {"202", "400", "401", "403", "408", "413", "415", "422", "429", "503"}
    assert "crc32" in post["description"] and "CHANNEL-MAJOR" in post["description"]  # the wire layout


def _accepts(name: str, obj) -> bool:
    return _validator(name).is_valid(obj)


def test_schemas_agree_with_the_wire_module():
    dev = "dev-openapi"
    good_frame = frame(dev, 1).to_json()
    tel = json.loads(wire.encode_model(telemetry(dev, 1)))
    evs = [json.loads(wire.encode_model(e)) for e in events(dev)]
    accepted = [("FrameJson", good_frame, wire.frame_from_json),
                ("FrameJson", {k: v for k, v in good_frame.items() if k != "device_id"}, wire.frame_from_json),
                ("Telemetry", tel, wire.telemetry_from_json),
                ("Telemetry", {"seq": 1, "t_us": T0}, wire.telemetry_from_json)]
    accepted += [("Event", e, wire.event_from_json) for e in evs]
    pro = {"type": "pro", "seq": 7, "t_us": T0, "session_id": str(uuid.UUID(int=5))}
    accepted += [("Event", {**pro, "instrument": "saq", "item_answers": [1, 2, 3, 4, 5, 1, 2, 3, 4]},
                  wire.event_from_json),
                 ("Event", {**pro, "instrument": "grc", "score": -3}, wire.event_from_json)]
    for name, obj, parse in accepted:
        parse(obj, dev)  # the wire module accepts it ...
        assert _accepts(name, obj), (name, obj)  # ... and so does the document
    sid = str(uuid.UUID(int=1))
    start = evs[0]
    refused = [
        ("FrameJson", {**good_frame, "samples": [[1.5, 2]]}), ("FrameJson", {**good_frame, "samples": [[40000]]}),
        ("FrameJson", {**good_frame, "fs_hz": 3}), ("FrameJson", {**good_frame, "samples": [[1]] * 65}),
        ("FrameJson", {**good_frame, "v": 2}), ("FrameJson", {**good_frame, "extra": 1}),
        ("FrameJson", {**good_frame, "scale_uv": 0}), ("FrameJson", {**good_frame, "session_id": 5}),
        ("FrameJson", {k: v for k, v in good_frame.items() if k != "seq"}),
        ("Telemetry", {"seq": 1, "t_us": T0, "battery_pct": 150}), ("Telemetry", {"seq": -1, "t_us": T0}),
        ("Telemetry", {"seq": 1, "t_us": 5}), ("Telemetry", {"seq": 1, "t_us": T0, "bogus": 1}),
        ("Telemetry", {"seq": 1, "t_us": T0, "impedance_kohm": [1.0] * 65}),
        ("Event", {"type": "task_start", "seq": 1, "t_us": T0, "session_id": sid, "task": "juggling",
                   "repetition": 1}),
        ("Event", {"type": "patient_report", "seq": 1, "t_us": T0, "session_id": sid, "discomfort": 11}),
        ("Event", {"type": "nap", "seq": 1, "t_us": T0, "session_id": sid}),
        ("Event", {"type": "pro", "seq": 1, "t_us": T0, "session_id": sid, "instrument": "face", "score": 101}),
        ("Event", {"type": "pro", "seq": 1, "t_us": T0, "session_id": sid, "instrument": "hads", "score": 1}),
        ("Event", {"type": "pro", "seq": 1, "t_us": T0, "session_id": sid, "instrument": "grc",
                   "item_answers": [8]}),
        ("Event", {**start, "therapy_type": "yoga"}),
        ("Event", {**start, "channel_map": [{"channel": 0, "muscle": "nose", "side": "L"}]}),
    ]
    parse_for = {"FrameJson": wire.frame_from_json, "Telemetry": wire.telemetry_from_json,
                 "Event": wire.event_from_json}
    for name, obj in refused:
        with pytest.raises(wire.WireError):
            parse_for[name](obj, dev)  # the wire module refuses it ...
        assert not _accepts(name, obj), (name, obj)  # ... and so does the document


class _Target:
    """The fixed good device the fuzzer talks as, and the raw topics' end offsets."""

    def __init__(self, settings: Settings, gateway, dev: str, secret: str):
        from kafka import KafkaConsumer, TopicPartition

        self.gateway, self.dev, self.secret = gateway, dev, secret
        self.consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None)
        self.parts = [TopicPartition(wire.topic_spec_for(k).name(settings), p) for k in wire.KINDS
                      for p in sorted(self.consumer.partitions_for_topic(wire.topic_spec_for(k).name(settings)))]
        self.session = requests.Session()
        self.statuses: collections.Counter[int] = collections.Counter()

    def end_offsets(self) -> int:
        return sum(self.consumer.end_offsets(self.parts).values())


@pytest.fixture(scope="module")
def fuzz_target(gateway, settings):
    import psycopg

    from ingest import registry

    dev = f"fuzz-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(settings.db_dsn(), autocommit=True) as conn:
        secret = registry.add_device(conn, clinic_id="test-clinic", device_id=dev, channel_map=CMAP, fs_hz=2000,
                                     kdf_n=2**12)
    t = _Target(settings, gateway, dev, secret)
    yield t
    print(f"fuzzed statuses: {dict(sorted(t.statuses.items()))}")
    t.consumer.close()
    t.session.close()


CHECKS = [st_checks.not_a_server_error, st_checks.status_code_conformance, st_checks.content_type_conformance,
          st_checks.response_schema_conformance, st_checks.response_headers_conformance]


@pytest.mark.slow
@SCHEMA.parametrize()
@hypothesis.settings(max_examples=40, deadline=None, derandomize=True,
                     suppress_health_check=list(hypothesis.HealthCheck))
def test_fuzz_running_gateway_from_the_document(case, fuzz_target):
    """No 5xx but the documented 503, answers as documented, and a refused request stores nothing."""
    if "device_id" in (case.path_parameters or {}):
        case.path_parameters["device_id"] = fuzz_target.dev
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {fuzz_target.secret}"}
    before = fuzz_target.end_offsets()
    # our own requests call: schemathesis' transport trips over urllib3-future's pool container
    # (installed with niquests), so it only builds the request and checks the answer
    response = fuzz_target.session.request(**case.as_transport_kwargs(base_url=fuzz_target.gateway.url),
                                           timeout=30)
    case.validate_response(response, checks=CHECKS)
    after = fuzz_target.end_offsets()
    fuzz_target.statuses[response.status_code] += 1
    assert response.status_code != 500
    assert after - before == (1 if response.status_code == 202 else 0), (response.status_code, response.text)
    assert response.headers.get("Server") == "mimetic-gateway"


def test_document_is_served(gateway):
    r = requests.get(gateway.url + "/v1/openapi.json", timeout=5)
    assert r.status_code == 200 and r.json() == json.loads(json.dumps(DOC))

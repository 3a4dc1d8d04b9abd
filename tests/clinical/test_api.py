"""The clinic API on the real database: bearer tokens, intake through the clinic's own
database login, clear 400s, another clinic's patient answering 404, audit rows under the
token's name, and an OpenAPI document whose paths are the app's routes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timezone
from pathlib import Path

import aiohttp
import hypothesis
import psycopg
import pytest
import schemathesis
from aiohttp import web

from clinical import model as M
from clinical import service as S
from clinical import tokens
from clinical.api import make_app, openapi_doc
from ingest import registry
from mimetic.config import Settings
from mimetic.net import free_loopback_port
from processors.storage import roles

pytestmark = pytest.mark.stack


def test_document_paths_are_the_app_routes() -> None:
    doc = openapi_doc()
    schemathesis.openapi.from_dict(doc)      # a loadable OpenAPI 3.1 document
    app = make_app(Settings())
    routes = {(r.method.lower(), r.resource.canonical) for r in app.router.routes()
              if r.method != "HEAD" and r.resource.canonical != "/v1/openapi.json"}
    assert routes == {(m, p) for p, ops in doc["paths"].items() for m in ops}


@pytest.fixture
def world(settings: Settings, tmp_path: Path) -> Iterator[dict]:
    tag = uuid.uuid4().hex[:6]
    s = settings.model_copy(update={"clinic_api_tokens_file": tmp_path / "tokens.json"})
    w = {"s": s, "a": f"apia-{tag}", "b": f"apib-{tag}", "login": f"t{tag}_api_a", "tag": tag,
         "pb": f"P-B{tag}".upper(), "dev": f"apia-dev-{tag}"}
    with psycopg.connect(s.db_dsn(), autocommit=True) as conn:
        for c in ("a", "b"):
            registry.ensure_clinic(conn, w[c])
        registry.add_device(conn, clinic_id=w["a"], device_id=w["dev"], kdf_n=2**10)
        S.add_patient(conn, S.Actor("setup"), M.PatientIn(code=w["pb"], clinic_id=w["b"]))
        roles.create_login(s, w["login"], "clinic", clinic_id=w["a"])
        w["token"] = tokens.add(s, conn, "nurse.a", w["a"], w["login"])
        with pytest.raises(tokens.TokenError, match="no login of clinic"):
            tokens.add(s, conn, "nurse.x", w["b"], w["login"])
    try:
        yield w
    finally:
        roles.drop_login(s, w["login"])


def test_clinic_api_intake(world: dict) -> None:
    s, code = world["s"], f"P-A{world['tag']}".upper()

    async def scenario() -> dict:
        port = free_loopback_port()
        runner = web.AppRunner(make_app(s))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        base, auth = f"http://127.0.0.1:{port}/v1", {"Authorization": f"Bearer {world['token']}"}
        got: dict = {}
        try:
            async with aiohttp.ClientSession() as http:
                async def call(method: str, path: str, body: dict | None = None, headers=auth) -> tuple[int, dict]:
                    async with http.request(method, base + path, json=body, headers=headers) as r:
                        return r.status, await r.json()

                got["no_token"] = (await call("GET", "/patients", headers={}))[0]
                got["bad_token"] = (await call("GET", "/patients", headers={"Authorization": "Bearer nope"}))[0]
                got["bad"] = await call("POST", "/patients", {"code": code, "affected_side": "X",
                                                              "baseline_hb_grade": 9})
                got["add"] = await call("POST", "/patients", {"code": code, "affected_side": "R",
                                                              "full_name": "Api Patient",
                                                              "consent_research": str(date.today())})
                got["course_bad"] = await call("POST", f"/patients/{code}/courses", {
                    "therapy_type": "microcurrent", "start_date": "2026-11-01", "planned_sessions": 10,
                    "minutes_per_session": 30})
                got["course"] = await call("POST", f"/patients/{code}/courses", {
                    "therapy_type": "microcurrent", "start_date": "2026-11-01", "planned_sessions": 10,
                    "minutes_per_session": 30, "current_limit_ua": 250})
                got["assessment"] = await call("POST", f"/patients/{code}/assessments", {
                    "assessed_on": "2026-11-01", "assessor": "Dr A", "hb_grade": 3, "sunnybrook": 61})
                got["pro"] = await call("POST", f"/patients/{code}/pros", {
                    "instrument": "face", "score": 55, "answered_at": datetime.now(timezone.utc).isoformat()})
                got["assign"] = await call("POST", f"/patients/{code}/devices", {
                    "device_id": world["dev"], "valid_from": "2026-11-01T08:00:00Z"})
                got["withdraw"] = await call("POST", f"/patients/{code}/consents/research/withdraw",
                                             {"on": str(date.today())})
                got["show"] = await call("GET", f"/patients/{code}")
                got["list"] = await call("GET", "/patients")
                got["other"] = await call("GET", f"/patients/{world['pb']}")
                got["other_course"] = await call("POST", f"/patients/{world['pb']}/courses", {
                    "therapy_type": "massage", "start_date": "2026-11-01", "planned_sessions": 10,
                    "minutes_per_session": 30})
                got["json"] = (await call("PATCH", f"/patients/{code}", {"nope": 1}))
        finally:
            await runner.cleanup()
        return got

    got = asyncio.run(scenario())
    assert (got["no_token"], got["bad_token"]) == (401, 401)
    assert got["bad"][0] == 400 and "affected_side" in got["bad"][1]["error"] and "6" in got["bad"][1]["error"]
    assert got["add"][0] == 201 and got["add"][1]["clinic_id"] == world["a"]
    assert got["course_bad"][0] == 400 and "current limit" in got["course_bad"][1]["error"]
    for key in ("course", "assessment", "pro", "assign"):
        assert got[key][0] == 201, got[key]
    assert got["withdraw"][0] == 200
    status, rec = got["show"]
    assert status == 200 and rec["identity"]["full_name"] == "Api Patient"
    assert rec["courses"][0]["current_limit_ua"] == 250 and rec["assignments"][0]["device_id"] == world["dev"]
    assert [c["in_force"] for c in rec["consents"]] == [False]
    assert {p["code"] for p in got["list"][1]} == {code}
    assert got["other"][0] == 404 and got["other_course"][0] == 404
    assert got["json"][0] == 400 and "nope" in got["json"][1]["error"]
    with psycopg.connect(s.db_dsn(), autocommit=True) as conn:
        rows = conn.execute("select a.action, a.object, a.actor, a.channel, a.db_user from app.access_audit a "
                            "join patient p using (patient_id) where p.code = %s order by audit_id",
                            (code,)).fetchall()
    assert ("read", "patient", "nurse.a", "api", world["login"]) in rows
    assert {r[2:] for r in rows} == {("nurse.a", "api", world["login"])}
    assert [r[:2] for r in rows][:2] == [("create", "patient"), ("create", "course")]


@pytest.fixture(scope="module")
def running_api(settings: Settings, tmp_path_factory) -> Iterator[dict]:
    """The clinic API in a background thread, with one clinic, device, login and token."""
    import threading

    tag = uuid.uuid4().hex[:6]
    s = settings.model_copy(update={"clinic_api_tokens_file": tmp_path_factory.mktemp("api") / "tokens.json"})
    clinic, login = f"apif-{tag}", f"t{tag}_api_fuzz"
    with psycopg.connect(s.db_dsn(), autocommit=True) as conn:
        registry.ensure_clinic(conn, clinic)
        registry.add_device(conn, clinic_id=clinic, device_id=f"apif-dev-{tag}", kdf_n=2**10)
        roles.create_login(s, login, "clinic", clinic_id=clinic)
        token = tokens.add(s, conn, "fuzzer", clinic, login)
    loop = asyncio.new_event_loop()
    port = free_loopback_port()
    runner = web.AppRunner(make_app(s))

    async def start() -> None:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    try:
        yield {"url": f"http://127.0.0.1:{port}", "token": token}
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        roles.drop_login(s, login)


API_SCHEMA = schemathesis.openapi.from_dict(openapi_doc())


@API_SCHEMA.parametrize()
@hypothesis.settings(max_examples=12, deadline=None, derandomize=True,
                     suppress_health_check=list(hypothesis.HealthCheck))
def test_fuzz_clinic_api_from_its_document(case, running_api) -> None:
    """Whatever a clinic tool sends: no server error, only documented statuses."""
    import requests
    from schemathesis import checks as st_checks

    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {running_api['token']}"}
    response = requests.request(**case.as_transport_kwargs(base_url=running_api["url"]), timeout=30)
    case.validate_response(response, checks=[st_checks.not_a_server_error, st_checks.status_code_conformance])
    assert response.status_code < 500, response.text

"""The clinic API: a clinic's own tools register patients, courses, assessments, PROs,
consents and device assignments over HTTP (``mimetic clinic-api``).

``Authorization: Bearer <token>`` (``mimetic clinic-api tokens add``). Each token is one
clinic user; the request runs through :mod:`clinical.service` as that user (audited under
the token's name, channel ``api``) on a connection of the *clinic's database login*, so
the database's row-level security confines it to the clinic's patients as well. A
patient of another clinic answers 404, like an unknown code. Erasure is not offered here
(the owner's `mimetic patients erase`). JSON in and out; the OpenAPI 3.1 document is at
``GET /v1/openapi.json``.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import psycopg
from aiohttp import web
from psycopg_pool import ConnectionPool
from pydantic import BaseModel, ValidationError

from mimetic.config import Settings

from . import model as M
from . import service as S
from . import tokens

MAX_BODY_BYTES = 65_536
SETTINGS = web.AppKey("settings", Settings)
POOLS = web.AppKey("pools", dict)
LOCK = web.AppKey("lock", threading.Lock)


class PatientNew(M.PatientFields):
    """A new patient through the API: the clinic is the token's."""

    code: M.Code
    consent_care: date | None = None
    consent_research: date | None = None


class EndCourse(M._In):
    end_date: date


class Withdraw(M._In):
    on: date


def _json(obj: Any, status: int = 200) -> web.Response:
    def default(x: Any) -> Any:
        if isinstance(x, (date, datetime)):
            return x.isoformat()
        if isinstance(x, Decimal):
            return float(x)
        return str(x)
    return web.json_response(obj, status=status, dumps=lambda o: json.dumps(o, default=default))


def _error(status: int, msg: str) -> web.HTTPException:
    cls = {400: web.HTTPBadRequest, 401: web.HTTPUnauthorized, 404: web.HTTPNotFound,
           413: web.HTTPRequestEntityTooLarge}[status]
    kw: dict[str, Any] = {"text": json.dumps({"error": msg}), "content_type": "application/json"}
    if status == 401:
        kw["headers"] = {"WWW-Authenticate": "Bearer"}
    if status == 413:
        return web.HTTPRequestEntityTooLarge(MAX_BODY_BYTES, 0, **kw)
    return cls(**kw)


def _user(request: web.Request) -> tokens.ApiUser:
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("Bearer ") or len(auth) > 200:
        raise _error(401, "a bearer token is needed")
    user = tokens.find(tokens.load(request.app[SETTINGS]), auth[7:].strip())
    if user is None:
        raise _error(401, "unknown token")
    return user


def _pool(request: web.Request, login: str) -> ConnectionPool:
    from processors.storage.roles import login_dsn

    with request.app[LOCK]:
        pools = request.app[POOLS]
        if login not in pools:
            pools[login] = ConnectionPool(login_dsn(request.app[SETTINGS], login), min_size=0, max_size=4,
                                          kwargs={"autocommit": True}, open=True)
        return pools[login]


async def _body(request: web.Request, model: type[BaseModel]) -> Any:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise _error(413, "body too large")
    try:
        raw = json.loads(await request.read() or b"{}")
        return model.model_validate(raw)
    except web.HTTPRequestEntityTooLarge:
        raise _error(413, "body too large") from None
    except ValueError as exc:
        raise _error(400, M.explain(exc) if isinstance(exc, ValidationError) else "body must be JSON") from None


async def _call(request: web.Request, fn: Callable[..., Any], *args: Any) -> Any:
    """Run a service function for the token's user on the clinic login's connection (in a thread)."""
    user = _user(request)
    actor = S.Actor(name=user.name, channel="api", clinic_id=user.clinic_id)
    pool = _pool(request, user.login)

    def work() -> Any:
        with pool.connection() as conn:
            return fn(conn, actor, *args)
    try:
        return await asyncio.to_thread(work)
    except S.NotFound as exc:
        raise _error(404, str(exc)) from None
    except M.IntakeError as exc:
        raise _error(400, str(exc)) from None
    except psycopg.errors.InsufficientPrivilege:
        raise _error(404, "not found") from None


def _code(request: web.Request) -> str:
    code = request.match_info["code"]
    if not M.CODE_RE.match(code):
        raise _error(404, "no such patient")
    return code


async def list_patients(request: web.Request) -> web.Response:
    return _json(await _call(request, S.list_patients))


async def add_patient(request: web.Request) -> web.Response:
    user = _user(request)
    body: PatientNew = await _body(request, PatientNew)
    try:
        p = M.PatientIn.model_validate({**body.model_dump(exclude_unset=True), "clinic_id": user.clinic_id})
    except ValidationError as exc:
        raise _error(400, M.explain(exc)) from None
    await _call(request, S.add_patient, p)
    return _json({"code": p.code, "clinic_id": p.clinic_id}, status=201)


async def show_patient(request: web.Request) -> web.Response:
    code = _code(request)
    rec = await _call(request, lambda conn, actor: S.show_patient(conn, actor, code, purpose="api"))
    return _json(rec.to_json())


async def update_patient(request: web.Request) -> web.Response:
    f = await _body(request, M.PatientFields)
    changed = await _call(request, S.update_patient, _code(request), f)
    return _json({"updated": changed})


def _create(fn: Callable[..., Any], model: type[BaseModel], key: str):
    async def handler(request: web.Request) -> web.Response:
        item = await _body(request, model)
        new_id = await _call(request, fn, _code(request), item)
        return _json({key: new_id}, status=201)
    return handler


async def end_course(request: web.Request) -> web.Response:
    body: EndCourse = await _body(request, EndCourse)
    try:
        course_id = int(request.match_info["course_id"])
    except ValueError:
        raise _error(404, "no such course") from None
    await _call(request, S.end_course, _code(request), course_id, body.end_date)
    return _json({"course_id": course_id, "end_date": body.end_date})


async def withdraw(request: web.Request) -> web.Response:
    body: Withdraw = await _body(request, Withdraw)
    purpose = request.match_info["purpose"]
    await _call(request, S.withdraw_consent, _code(request), purpose, body.on)
    return _json({"purpose": purpose, "withdrawn_on": body.on})


async def health(_request: web.Request) -> web.Response:
    return _json({"ok": True})


async def openapi(_request: web.Request) -> web.Response:
    return _json(openapi_doc())


ROUTES: list[tuple[str, str, Any, type[BaseModel] | None, str]] = [
    ("GET", "/v1/patients", list_patients, None, "Patients of the clinic (codes, no identity); audited read."),
    ("POST", "/v1/patients", add_patient, PatientNew, "Register a patient (identity and consents optional)."),
    ("GET", "/v1/patients/{code}", show_patient, None, "The patient's whole record, identity included; audited."),
    ("PATCH", "/v1/patients/{code}", update_patient, M.PatientFields, "Change the given fields."),
    ("POST", "/v1/patients/{code}/courses", _create(S.add_course, M.CourseIn, "course_id"), M.CourseIn,
     "Prescribe a therapy course (a patient's courses do not overlap)."),
    ("POST", "/v1/patients/{code}/courses/{course_id}/end", end_course, EndCourse, "Set a course's last day."),
    ("POST", "/v1/patients/{code}/assessments", _create(S.add_assessment, M.AssessmentIn, "assessment_id"),
     M.AssessmentIn, "Record a clinician's House-Brackmann and/or Sunnybrook grading."),
    ("POST", "/v1/patients/{code}/pros", _create(S.add_pro, M.ProIn, "pro_id"), M.ProIn,
     "Record a patient-reported outcome (FaCE, SAQ, GRC)."),
    ("POST", "/v1/patients/{code}/consents", _create(S.give_consent, M.ConsentIn, "consent_id"), M.ConsentIn,
     "Record a consent (care or research)."),
    ("POST", "/v1/patients/{code}/consents/{purpose}/withdraw", withdraw, Withdraw,
     "Withdraw a consent from a day on."),
    ("POST", "/v1/patients/{code}/devices", _create(S.assign_device, M.AssignmentIn, "assignment_id"),
     M.AssignmentIn, "Give a device to the patient from a time (its open assignment ends there)."),
]


def openapi_doc() -> dict[str, Any]:
    """OpenAPI 3.1 of the clinic API, the request bodies from the pydantic models."""
    schemas: dict[str, Any] = {"Error": {"type": "object", "properties": {"error": {"type": "string"}},
                                         "required": ["error"]}}
    paths: dict[str, Any] = {}

    def err(description: str) -> dict[str, Any]:
        return {"description": description,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}

    for method, path, _h, model, summary in ROUTES:
        params = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                  for n in ("code", "course_id", "purpose") if "{" + n + "}" in path]
        op: dict[str, Any] = {"summary": summary, "security": [{"bearer": []}], "parameters": params,
                              "responses": {"200" if method in ("GET", "PATCH") else "201": {"description": "done"},
                                            "400": err("a value refused, with the reason"),
                                            "401": err("no or unknown token"), "404": err("no such patient here")}}
        if model is not None:
            op["responses"]["413"] = err(f"body over {MAX_BODY_BYTES} bytes")
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(schema.pop("$defs", {}))
            schemas[model.__name__] = schema
            op["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}
        paths.setdefault(path, {})[method.lower()] = op
    paths["/v1/health"] = {"get": {"summary": "Liveness (no token).", "responses": {"200": {"description": "ok"}}}}
    return {"openapi": "3.1.0",
            "info": {"title": "mimetic clinic API", "version": "1",
                     "description": (__doc__ or "").strip()},
            "paths": paths,
            "components": {"schemas": schemas,
                           "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}}}


def make_app(s: Settings) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[SETTINGS], app[POOLS], app[LOCK] = s, {}, threading.Lock()
    app.router.add_get("/v1/health", health)
    app.router.add_get("/v1/openapi.json", openapi)
    for method, path, handler, _m, _s in ROUTES:
        app.router.add_route(method, path, handler)

    async def close_pools(app: web.Application) -> None:
        for pool in app[POOLS].values():
            await asyncio.to_thread(pool.close)
    app.on_cleanup.append(close_pools)
    return app


def run_api(s: Settings) -> None:
    """Serve until SIGINT/SIGTERM on MIMETIC_CLINIC_API_HOST:MIMETIC_CLINIC_API_PORT."""
    web.run_app(make_app(s), host=s.clinic_api_host, port=s.clinic_api_port, access_log=None,
                print=lambda *_: None)

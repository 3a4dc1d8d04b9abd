"""Roles: clinic isolation by row-level security, de-identified research, operator, ingest writer,
the gateway's authentication-only reads, no superuser for any service, CONNECT only where granted."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timezone

import psycopg
import pytest
from psycopg import errors

from ingest import registry
from mimetic.config import Settings
from mimetic.db import admin
from processors import records as r
from processors.storage import roles
from processors.storage.writer import DbWriter

from .helpers import mixed_records

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def world(settings: Settings) -> Iterator[dict]:
    """Two clinics with a patient, device and session each, and a login per role."""
    tag = uuid.uuid4().hex[:6]
    w: dict = {"tag": tag, "clinics": {}}
    with psycopg.connect(settings.db_dsn(), autocommit=True) as conn:
        for c in ("a", "b"):
            clinic = f"clinic-{c}-{tag}"
            conn.execute("insert into clinic (clinic_id, name) values (%s, %s)", (clinic, f"Clinic {c.upper()}"))
            pid = conn.execute(
                "insert into patient (clinic_id, code, etiology, affected_side, onset_date, baseline_hb_grade) "
                "values (%s, %s, 'bell_palsy', 'R', '2021-04-20', 4) returning patient_id",
                (clinic, f"P-{c.upper()}{tag}")).fetchone()[0]
            conn.execute("insert into patient_identity (patient_id, full_name, birth_date, contact) "
                         "values (%s, %s, '1970-01-01', 'x@example.org')", (pid, f"Name {c} {tag}"))
            conn.execute("insert into consent (patient_id, purpose, given_on) values (%s, 'research', '2021-05-01')",
                         (pid,))
            device = f"dev-{c}-{tag}"
            conn.execute(
                "insert into device (device_id, clinic_id, patient_id, channel_map, secret_hash) values "
                "(%s, %s, %s, '[{\"channel\": 0, \"muscle\": \"zygomaticus\", \"side\": \"L\"}]', 'hash')",
                (device, clinic, pid))
            w["clinics"][c] = {"clinic": clinic, "patient_id": pid, "device": device, "session": uuid.uuid4()}
    writer = DbWriter(settings.db_dsn())
    try:
        for c in w["clinics"].values():
            writer.write(mixed_records(c["device"], 40, c["session"]))
    finally:
        writer.close()
    logins = {
        "clinic_a": ("clinic", w["clinics"]["a"]["clinic"]),
        "clinic_b": ("clinic", w["clinics"]["b"]["clinic"]),
        "researcher": ("researcher", None),
        "operator": ("operator", None),
        "ingest": ("ingest", None),
    }
    w["logins"] = {}
    for key, (group, clinic) in logins.items():
        name = f"t{tag}_{key}"
        roles.create_login(settings, name, group, clinic_id=clinic)
        w["logins"][key] = name
    try:
        yield w
    finally:
        for name in w["logins"].values():
            roles.drop_login(settings, name)


def connect(settings: Settings, world: dict, key: str) -> psycopg.Connection:
    return psycopg.connect(roles.login_dsn(settings, world["logins"][key]), autocommit=True)


def ids(conn, sql: str) -> set:
    return {row[0] for row in conn.execute(sql)}


def test_password_is_kept_outside_the_repository(settings: Settings, world: dict) -> None:
    path = roles.password_file(settings, world["logins"]["researcher"])
    assert path.exists() and (path.stat().st_mode & 0o077) == 0
    assert "/work/main" not in str(path.resolve())


def test_clinic_sees_only_its_own_rows(settings: Settings, world: dict) -> None:
    a, b = world["clinics"]["a"], world["clinics"]["b"]
    with connect(settings, world, "clinic_a") as conn:
        assert ids(conn, "select clinic_id from clinic") == {a["clinic"]}
        assert ids(conn, "select patient_id from patient") == {a["patient_id"]}
        assert ids(conn, "select patient_id from patient_identity") == {a["patient_id"]}
        assert ids(conn, "select device_id from device") == {a["device"]}
        assert ids(conn, "select session_id from therapy_session") == {a["session"]}
        assert ids(conn, "select session_id from session_summary") == {a["session"]}
        assert ids(conn, "select session_id from session_muscle_summary") == {a["session"]}
        for table in ("envelope", "signal_quality", "balance", "activation", "telemetry", "alert", "alert_event",
                      "stream_stats"):
            assert ids(conn, f"select device_id from {table}") == {a["device"]}, table
        assert ids(conn, "select patient_id from patient_progress") == {a["patient_id"]}
        for view in ("patient_adherence", "patient_outcome", "patient_responder"):
            assert ids(conn, f"select patient_id from {view}") <= {a["patient_id"]}, view
        assert conn.execute("select sessions_done from patient_adherence").fetchall() == [(1,)]
        assert ids(conn, "select device_id from envelope_channel") == {a["device"]}
        # a direct probe of the other clinic's rows returns nothing
        assert conn.execute("select count(*) from envelope where device_id = %s", (b["device"],)).fetchone()[0] == 0
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("select secret_hash from device")
    with connect(settings, world, "clinic_b") as conn:
        assert ids(conn, "select patient_id from patient") == {b["patient_id"]}
        assert ids(conn, "select device_id from envelope") == {b["device"]}


def test_clinic_cannot_widen_its_view(settings: Settings, world: dict) -> None:
    with connect(settings, world, "clinic_a") as conn:
        # the RLS helpers answer only for the caller
        other = world["logins"]["clinic_b"]
        assert conn.execute("select app.clinic_ids(%s), app.clinic_device_ids(%s)", (other, other)).fetchone() \
            == ([], [])
        assert conn.execute("select app.clinic_ids(current_user)").fetchone()[0] == [world["clinics"]["a"]["clinic"]]
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("select * from app.clinic_login")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("select * from research.patient")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("insert into envelope (time, device_id, seq, fs_hz, env) values (now(), 'x', 1, 1, '{1}')")


@pytest.mark.parametrize("sql", [
    "select * from patient_identity", "select full_name from patient_identity", "select code from patient",
    "select * from patient", "select device_id from device", "select * from envelope",
    "select * from therapy_session", "select * from session_summary", "select * from app.patient_pseudo",
    "select * from app.secret", "select * from ops.device",
])
def test_researcher_cannot_read_identifying_tables(settings: Settings, world: dict, sql: str) -> None:
    with connect(settings, world, "researcher") as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute(sql)


def test_researcher_views_are_de_identified(settings: Settings, world: dict) -> None:
    forbidden = {"patient_id", "code", "patient_code", "device_id", "session_id", "full_name", "birth_date",
                 "contact", "clinic_id", "onset_date", "started_at", "ended_at", "time", "onset"}
    with connect(settings, world, "researcher") as conn:
        cols = conn.execute("select table_name, column_name from information_schema.columns "
                            "where table_schema = 'research'").fetchall()
        assert cols and not {c for _t, c in cols} & forbidden
        views = {t for t, _c in cols}
        assert {"patient", "session", "session_muscle", "patient_outcome", "balance", "activation",
                "envelope", "task_window", "session_synkinesis", "adherence", "responder"} <= views
        for v in views:
            conn.execute(f"select * from research.{v} limit 1")
        with pytest.raises(errors.UndefinedColumn):
            conn.execute("select code from research.patient")
        # both clinics' patients, under stable pseudonyms that are not the codes (this test's own
        # patients: the database holds other tests' consenting patients too)
        with psycopg.connect(settings.db_dsn(), autocommit=True) as owner:
            mine = [r[0] for r in owner.execute(
                "select pp.research_id from app.patient_pseudo pp join patient p using (patient_id) "
                "where p.code like %s", (f"%{world['tag']}",))]
        rows = conn.execute("select research_id, site_id, day_since_onset from research.session "
                            "where research_id in (select research_id from research.patient "
                            "where etiology = 'bell_palsy' and research_id = any(%s))", (mine,)).fetchall()
        rids = {row[0] for row in rows}
        assert len(rids) >= 2 and all(x.startswith("R-") for x in rids)
        assert not any(world["tag"] in x for x in rids)
        assert rids == {row[0] for row in conn.execute(
            "select research_id from research.session where research_id = any(%s)", (list(rids),))}
        assert conn.execute("select count(*) from research.envelope where research_id = any(%s)",
                            (list(rids),)).fetchone()[0] == 80
    # every research view is documented
    with psycopg.connect(settings.db_dsn(), autocommit=True) as owner:
        undocumented = owner.execute(
            "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
            "where n.nspname = 'research' and c.relkind = 'v' and obj_description(c.oid, 'pg_class') is null"
        ).fetchall()
        assert undocumented == []


def test_operator_sees_fleet_not_patients(settings: Settings, world: dict) -> None:
    a, b = world["clinics"]["a"], world["clinics"]["b"]
    with connect(settings, world, "operator") as conn:
        assert {a["device"], b["device"]} <= ids(conn, "select device_id from ops.device")
        assert {a["device"], b["device"]} <= ids(conn, "select device_id from telemetry")
        assert {a["device"], b["device"]} <= ids(conn, "select device_id from alert_event")
        conn.execute("select * from ops.active_alert").fetchall()
        conn.execute("select * from ops.pipeline_minute").fetchall()
        conn.execute("select * from ops.pipeline_throughput").fetchall()
        assert {a["device"], b["device"]} <= ids(conn, "select device_id from ops.silent_device")
        for sql in ("select * from patient_identity", "select * from patient", "select * from envelope",
                    "select * from session_summary", "select patient_id from device"):
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(sql)
        cols = {row[0] for row in conn.execute(
            "select column_name from information_schema.columns where table_schema = 'ops'")}
        assert not cols & {"patient_id", "secret_hash", "code"}


def test_ingest_writes_but_cannot_read_identity(settings: Settings, world: dict) -> None:
    a = world["clinics"]["a"]
    w = DbWriter(roles.login_dsn(settings, world["logins"]["ingest"]))
    try:
        result = w.write(mixed_records(a["device"], 60, uuid.uuid4()),
                         pipeline={"instance": "ingest-role-test", "records": 1})
        assert w.refresh_sessions(settle_s=0) >= 1   # security definer: no registry read needed
    finally:
        w.close()
    assert result.inserted["envelope"] == 20   # frames 40..59 are new, 0..39 were written already
    with connect(settings, world, "ingest") as conn:
        for sql in ("select * from patient_identity", "select * from patient", "select secret_hash from device",
                    "select * from research.patient", "select * from patient_progress"):
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(sql)


# --- least privilege (issue 11) -----------------------------------------------------------------


def service_dsns(settings: Settings, world: dict) -> dict[str, str]:
    """Every login a service or a person uses: owner, gateway, sink and the world's group logins."""
    dsns = {"owner": settings.db_dsn(), "gateway": roles.gateway_dsn(settings), "sink": roles.sink_dsn(settings)}
    for key, name in world["logins"].items():
        dsns[key] = roles.login_dsn(settings, name)
    return dsns


def test_no_login_used_by_a_service_is_a_superuser(settings: Settings, world: dict) -> None:
    for key, dsn in service_dsns(settings, world).items():
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute("select rolsuper, rolcreaterole, rolcreatedb, rolbypassrls from pg_roles "
                               "where rolname = current_user").fetchone()
            assert row == (False, False, False, False), key
            assert conn.execute("select pg_has_role('pg_execute_server_program', 'member')").fetchone()[0] is False


def test_copy_to_program_is_refused_for_every_service_login(settings: Settings, world: dict) -> None:
    for key, dsn in service_dsns(settings, world).items():
        with psycopg.connect(dsn, autocommit=True) as conn:
            for sql in ("copy (select 1) to program 'true'", "copy (select 1) to '/tmp/mimetic-copy-probe'"):
                with pytest.raises(errors.InsufficientPrivilege):
                    conn.execute(sql)


def test_gateway_reads_only_what_authentication_needs(settings: Settings, world: dict) -> None:
    a = world["clinics"]["a"]
    assert settings.gateway_pg_user != settings.pg_user
    with psycopg.connect(roles.gateway_dsn(settings), autocommit=True) as conn:
        assert conn.execute("select current_user").fetchone()[0] == settings.gateway_pg_user
        row = registry.row_from_tuple(conn.execute(registry.DEVICE_QUERY, (a["device"],)).fetchone())
        assert (row.device_id, row.clinic_id, row.secret_hash, row.status) == \
            (a["device"], a["clinic"], "hash", "active")
        assert row.channel_map[0]["muscle"] == "zygomaticus"
        for sql in ("select * from device", "select model from device", "select * from envelope",
                    "select * from patient", "select * from patient_identity", "select * from therapy_session",
                    "select * from session_summary", "select * from alert", "select * from telemetry",
                    "select * from clinic", "select * from ops.device", "select * from research.patient",
                    "select * from patient_progress", "select * from app.clinic_login"):
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(sql)
        for sql in ("update device set status = 'active' where device_id = 'x'",
                    "insert into alert_event (time, alert_id, device_id, alert_type, severity, state, raised_at) "
                    "values (now(), 'x', 'x', 'battery_low', 'info', 'raised', now())"):
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(sql)


def test_sink_login_is_an_ingest_member_that_cannot_read_notes(settings: Settings, world: dict) -> None:
    a = world["clinics"]["a"]
    with psycopg.connect(settings.db_dsn(), autocommit=True) as owner:
        owner.execute("update therapy_session set notes = 'clinician: patient anxious' where session_id = %s",
                      (a["session"],))
    for dsn in (roles.sink_dsn(settings), roles.login_dsn(settings, world["logins"]["ingest"])):
        with psycopg.connect(dsn, autocommit=True) as conn:
            assert conn.execute("select pg_has_role('mimetic_ingest', 'member')").fetchone()[0]
            assert conn.execute("select discomfort from therapy_session where session_id = %s",
                                (a["session"],)).fetchone() == (2,)
            for sql in ("select notes from therapy_session", "select * from therapy_session",
                        "update therapy_session set notes = 'x'", "select * from patient",
                        "select contact from patient_identity", "select secret_hash from device"):
                with pytest.raises(errors.InsufficientPrivilege):
                    conn.execute(sql)


def test_operator_does_not_read_patient_reports(settings: Settings, world: dict) -> None:
    a = world["clinics"]["a"]
    t = datetime.now(timezone.utc)
    aid = r.alert_id(a["device"], "discomfort", t)
    words = "discomfort 8/10, skin: burning"
    w = DbWriter(roles.sink_dsn(settings))   # the sink writes alerts of any device
    try:
        w.write([r.AlertRecord(alert_id=aid, device_id=a["device"], session_id=a["session"],
                               alert_type="discomfort", severity="warning", state="raised", time=t,
                               raised_at=t, value=8.0, threshold=7.0, message=words)])
    finally:
        w.close()
    with connect(settings, world, "operator") as conn:
        assert conn.execute("select count(*) from alert where alert_id = %s", (aid,)).fetchone()[0] == 0
        assert conn.execute("select count(*) from alert_event where alert_id = %s", (aid,)).fetchone()[0] == 0
        row = conn.execute("select alert_type, value, message from ops.active_alert where alert_id = %s",
                           (aid,)).fetchone()
        assert row is not None and row[0] == "discomfort" and row[1] is None and "burning" not in row[2]
        # other alerts keep their detail
        assert conn.execute("select count(*) from alert_event where message = 'electrode 3 off'").fetchone()[0] >= 2
    with connect(settings, world, "clinic_a") as conn:   # the patient's clinic reads the report
        assert conn.execute("select value, message from alert where alert_id = %s", (aid,)).fetchone() == (8.0, words)


def test_connect_only_for_roles_granted_it(settings: Settings, world: dict) -> None:
    name = f"t{world['tag']}_nogroup"
    with admin.connect_admin(settings) as conn:
        conn.execute(psycopg.sql.SQL("create role {} login password 'probe-only'").format(psycopg.sql.Identifier(name)))
    try:
        with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
            psycopg.connect(settings.db_dsn(user=name, password="probe-only"), connect_timeout=5)
        # group logins reach their database, and not the maintenance database
        for key in ("operator", "researcher"):
            dsn = roles.login_dsn(settings, world["logins"][key])
            psycopg.connect(dsn, connect_timeout=5).close()
            other = settings.model_copy(update={"pg_database": "postgres"})
            with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
                psycopg.connect(other.db_dsn(user=world["logins"][key], password=roles.role_password(
                    settings, world["logins"][key])), connect_timeout=5)
        with psycopg.connect(settings.db_dsn(), autocommit=True) as owner:
            acl = owner.execute("select datacl::text[] from pg_database where datname = current_database()"
                                ).fetchone()[0]
            assert not any(item.startswith("=") for item in acl), acl   # nothing for PUBLIC
            for db in ("postgres", "template1", settings.pg_database):
                assert owner.execute("select has_database_privilege('public', %s, 'connect')",
                                     (db,)).fetchone()[0] is False, db
    finally:
        with admin.connect_admin(settings) as conn:
            conn.execute(psycopg.sql.SQL("drop role {}").format(psycopg.sql.Identifier(name)))


def test_roles_create_refuses_an_existing_role_without_rotate(settings: Settings, world: dict) -> None:
    name = f"t{world['tag']}_rot"
    path = roles.create_login(settings, name, "operator")
    try:
        before = path.read_text()
        with pytest.raises(roles.RoleRefused, match="--rotate"):
            roles.create_login(settings, name, "operator")
        assert path.read_text() == before
        psycopg.connect(roles.login_dsn(settings, name), connect_timeout=5).close()   # password kept
        roles.create_login(settings, name, "operator", rotate=True)
        assert path.read_text() != before
        psycopg.connect(roles.login_dsn(settings, name), connect_timeout=5).close()
        for reserved in (settings.pg_user, settings.pg_admin_user, "mimetic_ingest"):
            for rotate in (False, True):
                with pytest.raises(roles.RoleRefused):
                    roles.create_login(settings, reserved, "operator", rotate=rotate)
        # the owner's password still works
        psycopg.connect(settings.db_dsn(), connect_timeout=5).close()
    finally:
        roles.drop_login(settings, name)

"""The clinical workflow against the real database: validation and atomicity, device
assignments and a session's patient, consent gating of the research views, the access
audit (written, append-only), erasure from every table, and a clinic login that sees and
writes only its own clinic's patients."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone

import psycopg
import pytest
from psycopg import errors
from typer.testing import CliRunner

from clinical import model as M
from clinical import service as S
from clinical.erase import erase_patient
from ingest import registry
from mimetic.config import Settings
from processors.storage import roles
from processors.storage.writer import DbWriter
from tests.storage.helpers import T0, mixed_records

pytestmark = pytest.mark.stack

ACTOR = S.Actor(name="test-clinician", channel="cli")


@pytest.fixture
def clinic(db: psycopg.Connection) -> Iterator[dict]:
    """A clinic of its own with one device (rows stay: ids are unique per test)."""
    tag = uuid.uuid4().hex[:6]
    c = {"tag": tag, "clinic": f"cw-{tag}", "device": f"cw-dev-{tag}", "code": f"P-CW{tag}".upper()}
    registry.ensure_clinic(db, c["clinic"])
    registry.add_device(db, clinic_id=c["clinic"], device_id=c["device"], kdf_n=2**10)
    yield c


def _patient(db: psycopg.Connection, c: dict, code: str | None = None, **extra) -> int:
    return S.add_patient(db, ACTOR, M.PatientIn(code=code or c["code"], clinic_id=c["clinic"], affected_side="L",
                                                etiology="bell_palsy", onset_date=date(2026, 1, 2), **extra))


def _audit(db: psycopg.Connection, pid: int) -> list[tuple]:
    return db.execute("select action, object, actor, channel, detail from app.access_audit where patient_id = %s "
                      "order by audit_id", (pid,)).fetchall()


def test_bad_values_are_refused_with_clear_messages() -> None:
    cases = [
        (M.PatientIn, dict(code="P-X1", clinic_id="c", affected_side="up"), "affected_side"),
        (M.PatientIn, dict(code="P-X1", clinic_id="c", baseline_hb_grade=7), "less than or equal to 6"),
        (M.PatientIn, dict(code="P-X1", clinic_id="c", onset_date="2999-01-01"), "in the future"),
        (M.CourseIn, dict(therapy_type="microcurrent", start_date="2026-01-01", planned_sessions=10,
                          minutes_per_session=30), "needs the prescribed current limit"),
        (M.CourseIn, dict(therapy_type="massage", start_date="2026-01-01", planned_sessions=10,
                          minutes_per_session=30, current_limit_ua=200), "no current limit"),
        (M.CourseIn, dict(therapy_type="laser", start_date="2026-01-01", planned_sessions=10,
                          minutes_per_session=30), "therapy_type"),
        (M.AssessmentIn, dict(assessed_on="2026-01-01", assessor="dr"), "needs a House-Brackmann"),
        (M.AssessmentIn, dict(assessed_on="2026-01-01", assessor="dr", sunnybrook=50, sunnybrook_resting=5,
                              sunnybrook_voluntary=60, sunnybrook_synkinesis=0), "!= voluntary - resting"),
        (M.ProIn, dict(instrument="saq", item_answers=[1] * 8, answered_at="2026-01-01T10:00"), "9 items"),
        (M.ProIn, dict(instrument="face", score=101, answered_at="2026-01-01T10:00"), "outside 0..100"),
        (M.AssignmentIn, dict(device_id="dev-1", valid_from="2026-01-02", valid_to="2026-01-01"), "after"),
    ]
    for model, values, want in cases:
        with pytest.raises(M.IntakeError, match=want):
            M.build(model, **values)
    # the scores a clinic types are derived from the items where given
    assert M.build(M.ProIn, instrument="saq", item_answers=[5] * 9, answered_at="2026-01-01T10:00").score == 100
    assert M.build(M.AssessmentIn, assessed_on="2026-01-01", assessor="dr", sunnybrook_resting=5,
                   sunnybrook_voluntary=60, sunnybrook_synkinesis=3).sunnybrook == 52


def test_instrument_ranges_match_the_schema(db: psycopg.Connection) -> None:
    rows = db.execute("select instrument, score_min, score_max, higher_is_better, items, item_min, item_max "
                      "from pro_instrument").fetchall()
    assert {r[0]: tuple(float(x) if i < 2 else x for i, x in enumerate(r[1:])) for r in rows} == {
        k: (float(v[0]), float(v[1]), *v[2:]) for k, v in M.PRO_RANGES.items()}
    from mimetic.domain import COURSE_TYPES

    assert tuple(db.execute("select app.course_types()").fetchone()[0]) == COURSE_TYPES


def test_nothing_is_half_written(db: psycopg.Connection, clinic: dict) -> None:
    pid = _patient(db, clinic)
    S.add_course(db, ACTOR, clinic["code"], M.CourseIn(therapy_type="microcurrent", start_date=date(2026, 2, 1),
                                                       end_date=date(2026, 3, 1), planned_sessions=12,
                                                       minutes_per_session=30, current_limit_ua=300))
    n_audit = len(_audit(db, pid))
    # an overlapping course is refused by the database: no course, no plan change, no audit row
    with pytest.raises(M.IntakeError, match="already has a course"):
        S.add_course(db, ACTOR, clinic["code"], M.CourseIn(therapy_type="massage", start_date=date(2026, 2, 20),
                                                           planned_sessions=40, minutes_per_session=60))
    assert db.execute("select count(*) from therapy_course where patient_id = %s", (pid,)).fetchone()[0] == 1
    assert db.execute("select planned_sessions, planned_minutes from patient where patient_id = %s",
                      (pid,)).fetchone() == (12, 30)
    assert len(_audit(db, pid)) == n_audit
    # a patient whose identity is refused is not created at all
    with pytest.raises(M.IntakeError, match="is taken"):
        _patient(db, clinic)
    with pytest.raises(S.NotFound):
        S.show_patient(db, S.Actor(name="x", clinic_id="another-clinic"), clinic["code"])


def test_a_device_moves_from_one_patient_to_the_next(settings: Settings, db: psycopg.Connection,
                                                     clinic: dict) -> None:
    a = _patient(db, clinic)
    b = _patient(db, clinic, code=clinic["code"] + "B")
    t1, t2 = datetime(2026, 3, 1, tzinfo=timezone.utc), datetime(2026, 4, 1, tzinfo=timezone.utc)
    S.assign_device(db, ACTOR, clinic["code"], M.AssignmentIn(device_id=clinic["device"], valid_from=t1))
    S.assign_device(db, ACTOR, clinic["code"] + "B", M.AssignmentIn(device_id=clinic["device"], valid_from=t2))
    at = lambda t: db.execute("select app.device_patient_at(%s, %s)", (clinic["device"], t)).fetchone()[0]  # noqa: E731
    assert (at(t1 - timedelta(seconds=1)), at(t1), at(t2 - timedelta(seconds=1)), at(t2)) == (None, a, a, b)
    assert db.execute("select patient_id from device where device_id = %s", (clinic["device"],)).fetchone()[0] == b
    # the first assignment was closed where the second began; an overlap is refused
    assert db.execute("select valid_to from device_assignment where patient_id = %s", (a,)).fetchone()[0] == t2
    with pytest.raises(M.IntakeError, match="already assigned"):
        S.assign_device(db, ACTOR, clinic["code"], M.AssignmentIn(device_id=clinic["device"], valid_from=t1,
                                                                  valid_to=t1 + timedelta(days=40)))
    # a session is the patient's the device was with at its start, whatever the device's patient now
    sid = uuid.uuid4()
    w = DbWriter(settings.db_dsn())
    try:
        w.write(mixed_records(clinic["device"], 20, sid, t0=t1 + timedelta(days=3)))
    finally:
        w.close()
    assert db.execute("select patient_id from session_summary where session_id = %s", (sid,)).fetchone()[0] == a
    assert db.execute("select patient_id from therapy_session where session_id = %s", (sid,)).fetchone()[0] == a


def test_research_views_include_only_consenting_patients(db: psycopg.Connection, clinic: dict) -> None:
    pid = _patient(db, clinic, consent_care=date(2026, 1, 3))
    S.add_assessment(db, ACTOR, clinic["code"], M.AssessmentIn(assessed_on=date(2026, 1, 10), assessor="dr", hb_grade=4))
    S.add_pro(db, ACTOR, clinic["code"], M.ProIn(instrument="grc", score=2, answered_at=datetime.now(timezone.utc)))
    research_ids = lambda: {r[0] for r in db.execute(  # noqa: E731
        "select research_id from research.patient union select research_id from research.assessment "
        "union select research_id from research.pro").fetchall()}
    mine = lambda: db.execute("select research_id from app.patient_pseudo where patient_id = %s",  # noqa: E731
                              (pid,)).fetchone()
    assert mine() is None                      # care consent only: not in research
    S.give_consent(db, ACTOR, clinic["code"], M.ConsentIn(purpose="research", given_on=date(2026, 1, 3)))
    rid = mine()[0]
    assert rid in research_ids()
    assert db.execute("select hb_grade, day_since_onset from research.assessment where research_id = %s",
                      (rid,)).fetchone() == (4, 8)
    S.withdraw_consent(db, ACTOR, clinic["code"], "research", date.today())
    assert mine() is None and rid not in research_ids()
    with pytest.raises(S.NotFound):
        S.withdraw_consent(db, ACTOR, clinic["code"], "research", date.today())
    # a new consent after the withdrawal brings the patient back; the history is kept
    S.give_consent(db, ACTOR, clinic["code"], M.ConsentIn(purpose="research", given_on=date.today()))
    assert rid in research_ids()
    assert db.execute("select count(*) from consent where patient_id = %s and purpose = 'research'",
                      (pid,)).fetchone()[0] == 2


def test_reads_and_changes_are_audited_and_the_audit_is_append_only(db: psycopg.Connection, clinic: dict) -> None:
    pid = _patient(db, clinic, full_name="Ann Example", contact="ann@example.org")
    S.update_patient(db, ACTOR, clinic["code"], M.PatientFields(baseline_hb_grade=5))
    rec = S.show_patient(db, ACTOR, clinic["code"], purpose="report")
    assert rec.identity["full_name"] == "Ann Example" and rec.patient["baseline_hb_grade"] == 5
    S.list_patients(db, ACTOR, clinic["clinic"])
    rows = _audit(db, pid)
    assert [r[:2] for r in rows] == [("create", "patient"), ("update", "patient"), ("read", "patient")]
    assert rows[2][2:] == ("test-clinician", "cli", "report")
    text = " ".join(str(x) for r in rows for x in r)
    assert clinic["code"] not in text and "Ann" not in text and "example.org" not in text
    assert db.execute("select count(*) from app.access_audit where object = 'patient_list' and clinic_id = %s",
                      (clinic["clinic"],)).fetchone()[0] == 1
    for stmt in ("update app.access_audit set actor = 'x' where patient_id = %s",
                 "delete from app.access_audit where patient_id = %s"):
        with pytest.raises(errors.RaiseException, match="append-only"):
            db.execute(stmt, (pid,))
    with pytest.raises(errors.RaiseException, match="append-only"):
        db.execute("truncate app.access_audit")


def test_erasure_removes_the_patient_from_every_table(settings: Settings, db: psycopg.Connection,
                                                      clinic: dict) -> None:
    pid = _patient(db, clinic, full_name="Ann Example", consent_care=date(2026, 1, 3),
                   consent_research=date(2026, 1, 3))
    S.add_course(db, ACTOR, clinic["code"], M.CourseIn(therapy_type="massage", start_date=T0.date(),
                                                       planned_sessions=5, minutes_per_session=20))
    S.add_assessment(db, ACTOR, clinic["code"], M.AssessmentIn(assessed_on=T0.date(), assessor="dr", hb_grade=3))
    S.add_pro(db, ACTOR, clinic["code"], M.ProIn(instrument="grc", score=1, answered_at=T0))
    S.assign_device(db, ACTOR, clinic["code"], M.AssignmentIn(device_id=clinic["device"],
                                                              valid_from=T0 - timedelta(hours=1)))
    sid = uuid.uuid4()
    w = DbWriter(settings.db_dsn())
    try:
        w.write(mixed_records(clinic["device"], 40, sid))
        w.refresh_sessions(settle_s=0)
    finally:
        w.close()
    tables = [(s, t) for s, t in db.execute(
        "select table_schema, table_name from information_schema.columns c "
        "join information_schema.tables using (table_schema, table_name) where table_type = 'BASE TABLE' "
        "and table_schema in ('public', 'app') and column_name in ('session_id', 'patient_id') "
        "and (table_schema, table_name) not in (('app', 'access_audit'))").fetchall()]

    def count(schema: str, table: str) -> int:
        cols = {r[0] for r in db.execute("select column_name from information_schema.columns where table_schema = %s "
                                         "and table_name = %s", (schema, table))}
        cond = " or ".join(([f"session_id = '{sid}'"] if "session_id" in cols else [])
                           + ([f"patient_id = {pid}"] if "patient_id" in cols else []))
        return db.execute(f"select count(*) from {schema}.{table} where {cond}").fetchone()[0]

    before = {t: count(*t) for t in tables}
    assert sum(before.values()) > 50 and before[("public", "envelope")] > 0 and before[("public", "consent")] == 2
    out = erase_patient(db, ACTOR, clinic["code"])
    assert {t: count(*t) for t in tables if count(*t)} == {}
    assert out.sessions == 1 and out.rows["envelope"] == before[("public", "envelope")]
    assert db.execute("select count(*) from telemetry where device_id = %s", (clinic["device"],)).fetchone()[0] == 0
    assert db.execute("select count(*) from app.alert_notice where device_id = %s",
                      (clinic["device"],)).fetchone()[0] == 0
    # the device stays, with no patient; the erasure is audited by number and counts only
    assert db.execute("select patient_id from device where device_id = %s", (clinic["device"],)).fetchone() == (None,)
    last = _audit(db, pid)[-1]
    assert last[:2] == ("erase", "patient") and clinic["code"] not in last[4] and "envelope" in last[4]
    with pytest.raises(S.NotFound):
        erase_patient(db, ACTOR, clinic["code"])


@pytest.fixture
def clinic_login(settings: Settings, db: psycopg.Connection) -> Iterator[dict]:
    """Two clinics, a patient each, and a login of the first clinic."""
    tag = uuid.uuid4().hex[:6]
    w = {"a": f"cwa-{tag}", "b": f"cwb-{tag}", "login": f"t{tag}_intake_a"}
    for c in ("a", "b"):
        registry.ensure_clinic(db, w[c])
        S.add_patient(db, ACTOR, M.PatientIn(code=f"P-{c.upper()}{tag}", clinic_id=w[c]))
        registry.add_device(db, clinic_id=w[c], device_id=f"cw{c}-dev-{tag}", kdf_n=2**10)
    w["pa"], w["pb"] = f"P-A{tag}", f"P-B{tag}"
    w["da"], w["db"] = f"cwa-dev-{tag}", f"cwb-dev-{tag}"
    roles.create_login(settings, w["login"], "clinic", clinic_id=w["a"])
    try:
        yield w
    finally:
        roles.drop_login(settings, w["login"])


def test_a_clinic_login_sees_and_writes_only_its_own_patients(settings: Settings, clinic_login: dict) -> None:
    w = clinic_login
    me = S.Actor(name="nurse-a", channel="api", clinic_id=w["a"])
    with psycopg.connect(roles.login_dsn(settings, w["login"]), autocommit=True) as conn:
        # intake through the service as the clinic's own login (what the clinic API does)
        S.add_patient(conn, me, M.PatientIn(code=w["pa"] + "N", clinic_id=w["a"], affected_side="R",
                                            full_name="New Patient", consent_research=date.today()))
        S.add_course(conn, me, w["pa"], M.CourseIn(therapy_type="biofeedback_exercise", start_date=date.today(),
                                                   planned_sessions=10, minutes_per_session=20))
        S.assign_device(conn, me, w["pa"], M.AssignmentIn(device_id=w["da"], valid_from=datetime.now(timezone.utc)))
        S.add_pro(conn, me, w["pa"], M.ProIn(instrument="face", score=60, answered_at=datetime.now(timezone.utc)))
        rec = S.show_patient(conn, me, w["pa"] + "N")
        assert rec.identity["full_name"] == "New Patient"
        assert {r["code"] for r in S.list_patients(conn, me)} == {w["pa"], w["pa"] + "N"}
        # the other clinic's patient does not exist for this login, whatever the service is told
        other = S.Actor(name="nurse-a", channel="api", clinic_id=None)
        with pytest.raises(S.NotFound):
            S.show_patient(conn, other, w["pb"])
        with pytest.raises(S.NotFound):
            S.add_patient(conn, other, M.PatientIn(code=w["pb"] + "X", clinic_id=w["b"]))
        with pytest.raises(errors.InsufficientPrivilege):   # RLS, below the service
            conn.execute("insert into patient (clinic_id, code) values (%s, %s)", (w["b"], w["pb"] + "Y"))
        pid_b = conn.execute("select patient_id from patient where code = %s", (w["pb"],)).fetchone()
        assert pid_b is None
        with psycopg.connect(settings.db_dsn(), autocommit=True) as owner:
            pid_b = owner.execute("select patient_id from patient where code = %s", (w["pb"],)).fetchone()[0]
        with pytest.raises(errors.InsufficientPrivilege):   # RLS: a row of another clinic's patient
            conn.execute("insert into clinical_assessment (patient_id, assessed_on, assessor, hb_grade) "
                         "values (%s, current_date, 'x', 2)", (pid_b,))
        for table in ("therapy_course", "device_assignment", "clinical_assessment", "patient_reported_outcome",
                      "consent"):
            assert conn.execute(f"select count(*) from {table} where patient_id = %s", (pid_b,)).fetchone()[0] == 0
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("select * from app.access_audit")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("delete from patient where code = %s", (w["pa"],))
        with pytest.raises(errors.InsufficientPrivilege):   # the audit row cannot claim another clinic
            conn.execute("insert into app.access_audit (actor, channel, clinic_id, action, object) "
                         "values ('x', 'api', %s, 'read', 'patient')", (w["b"],))


def test_cli_intake(settings: Settings, clinic: dict) -> None:
    from mimetic.cli import app

    run = lambda *args: CliRunner().invoke(app, ["--database", settings.pg_database, *args])  # noqa: E731
    code = clinic["code"]
    r = run("patients", "add", code, "--clinic", clinic["clinic"], "--side", "R", "--hb", "4", "--onset",
            "2026-01-02", "--consent-research", "2026-01-05")
    assert r.exit_code == 0, r.output
    r = run("courses", "add", code, "--type", "microcurrent", "--start", "2026-01-06", "--sessions", "12",
            "--minutes", "30")
    assert r.exit_code == 1 and "current limit" in r.output
    assert run("courses", "add", code, "--type", "microcurrent", "--start", "2026-01-06", "--sessions", "12",
               "--minutes", "30", "--current-limit-ua", "300").exit_code == 0
    assert run("devices", "assign", clinic["device"], "--patient", code, "--from", "2026-01-06").exit_code == 0
    assert run("assessments", "add", code, "--on", "2026-01-06", "--assessor", "dr", "--hb", "4").exit_code == 0
    assert run("pros", "add", code, "--instrument", "saq", "--items", "2,2,2,2,2,2,2,2,2").exit_code == 0
    r = run("devices", "unassign", clinic["device"], "--at", "2026-01-20")
    assert r.exit_code == 0, r.output
    assert run("devices", "unassign", clinic["device"]).exit_code == 1      # nothing open any more
    r = run("patients", "show", code, "--json")
    assert r.exit_code == 0, r.output
    assert '"current_limit_ua": 300.0' in r.output and '"score": "40.00"' in r.output
    assert '"valid_to": "2026-01-20 00:00:00+00:00"' in r.output
    r = run("patients", "erase", code, "--yes")
    assert r.exit_code == 0 and "erased" in r.output and "retention" in r.output, r.output
    assert run("patients", "show", code).exit_code == 1


def test_app_pros_are_stored_once_for_the_sessions_patient(settings: Settings, db: psycopg.Connection,
                                                           clinic: dict) -> None:
    from ingest import wire
    from processors.worker.device import DeviceProcessor, WorkerParams

    pid = _patient(db, clinic)
    S.assign_device(db, ACTOR, clinic["code"], M.AssignmentIn(device_id=clinic["device"],
                                                              valid_from=T0 - timedelta(days=1)))
    sid = uuid.uuid4()
    ev = wire.event_from_json({"type": "pro", "seq": 9, "t_us": int(T0.timestamp() * 1e6) + 5_000_000,
                               "session_id": str(sid), "instrument": "face",
                               "item_answers": [5, 4, 4, 3, 5, 4, 4, 3, 5, 4, 4, 3, 5, 4, 4]}, clinic["device"])
    recs = DeviceProcessor(clinic["device"], WorkerParams.from_settings(settings)).on_event(ev)
    assert [type(x).__name__ for x in recs] == ["ProRecord"] and recs[0].score == pytest.approx(76.67)
    w = DbWriter(settings.db_dsn())
    try:
        for _ in range(2):   # a replay stores nothing new
            w.write(recs)
        # the same answer from a device assigned to nobody then: not stored (no patient to give it to)
        other = f"{clinic['device']}-x"
        registry.add_device(db, clinic_id=clinic["clinic"], device_id=other, kdf_n=2**10)
        res = w.write([_replace(recs[0], device_id=other, session_id=uuid.uuid4())])
    finally:
        w.close()
    assert res.inserted.get("patient_reported_outcome", 0) == 0
    rows = db.execute("select patient_id, instrument, score, source, device_id from patient_reported_outcome "
                      "where patient_id = %s", (pid,)).fetchall()
    assert [(r[0], r[1], float(r[2]), r[3], r[4]) for r in rows] == [(pid, "face", 76.67, "app", clinic["device"])]


def _replace(rec, **changes):
    import msgspec

    return msgspec.structs.replace(rec, **changes)


def test_report_and_export_reads_are_audited(settings: Settings, db: psycopg.Connection, clinic: dict,
                                             tmp_path) -> None:
    from mimetic.cli import app

    pid = _patient(db, clinic)
    run = lambda *args: CliRunner().invoke(app, ["--database", settings.pg_database, *args])  # noqa: E731
    run("report", "--patient", clinic["code"], "--out", str(tmp_path / "r.png"))   # no sessions: may refuse
    assert ("read", "patient", "report") in {(r[0], r[1], r[4]) for r in _audit(db, pid)}
    n = db.execute("select count(*) from app.access_audit where action = 'export'").fetchone()[0]
    r = run("query", "patients", "--out", str(tmp_path / "p.csv"))
    assert r.exit_code == 0, r.output
    assert db.execute("select count(*) from app.access_audit where action = 'export'").fetchone()[0] == n + 1

"""The clinical workflow service: patients, courses, assessments, PROs, consent and device
assignments (tables of migration 0014), used by the CLI, the clinic API and the simulator.

Every function runs in one transaction (nothing half-written) and takes an :class:`Actor`:
who acts, through which channel, and for which clinic (``clinic_id`` None: every clinic,
the owner's CLI). A patient of another clinic does not exist for a clinic actor (the
answer is the same as for an unknown code). Reads of identifiable data (``show_patient``,
``list_patients``) and every change write a row of ``app.access_audit`` in the same
transaction, so no read or change happens without its audit row.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

import psycopg
from psycopg import errors
from psycopg.rows import dict_row

from . import model as M
from .model import IntakeError


class NotFound(LookupError):
    """An unknown patient, course or device (or one of another clinic)."""


@dataclass(frozen=True)
class Actor:
    name: str                                          # person or API token name
    channel: Literal["cli", "api", "demo", "app"] = "cli"
    clinic_id: str | None = None                       # None: every clinic (owner)


@contextmanager
def _tx(conn: psycopg.Connection) -> Iterator[None]:
    """One transaction; a constraint the database enforces becomes an IntakeError with its message."""
    try:
        with conn.transaction():
            yield
    except (errors.CheckViolation, errors.ExclusionViolation, errors.UniqueViolation,
            errors.ForeignKeyViolation, errors.NotNullViolation, errors.InvalidTextRepresentation,
            errors.DatetimeFieldOverflow, errors.NumericValueOutOfRange) as exc:
        diag = exc.diag.message_primary or str(exc)
        raise IntakeError(diag) from None


def audit(conn: psycopg.Connection, actor: Actor, action: str, obj: str, *, patient_id: int | None = None,
          clinic_id: str | None = None, detail: str = "") -> None:
    """Append one access-audit row (never identifying data in ``detail``)."""
    conn.execute("insert into app.access_audit (actor, channel, clinic_id, action, object, patient_id, detail) "
                 "values (%s, %s, %s, %s, %s, %s, %s)",
                 (actor.name[:200], actor.channel, clinic_id or actor.clinic_id, action, obj, patient_id,
                  detail[:2000]))


def _patient(conn: psycopg.Connection, actor: Actor, code: str, *, lock: bool = False) -> tuple[int, str]:
    """(patient_id, clinic_id) of a code the actor may act on, else NotFound."""
    row = conn.execute("select patient_id, clinic_id from patient where code = %s" + (" for update" if lock else ""),
                       (code,)).fetchone()
    if row is None or (actor.clinic_id is not None and row[1] != actor.clinic_id):
        raise NotFound(f"no patient {code}" + (f" in clinic {actor.clinic_id}" if actor.clinic_id else ""))
    return int(row[0]), str(row[1])


def _set_identity(conn: psycopg.Connection, patient_id: int, ident: dict[str, Any]) -> None:
    if not ident:
        return
    cols = list(ident)
    conn.execute(
        f"insert into patient_identity (patient_id, {', '.join(cols)}) values (%s, {', '.join(['%s'] * len(cols))}) "
        f"on conflict (patient_id) do update set {', '.join(f'{c} = excluded.{c}' for c in cols)}",
        (patient_id, *ident.values()))


# --- patients ---------------------------------------------------------------------------------

def add_patient(conn: psycopg.Connection, actor: Actor, p: M.PatientIn) -> int:
    """A new patient with its clinical fields, identity and consents given at intake."""
    if actor.clinic_id is not None and p.clinic_id != actor.clinic_id:
        raise IntakeError(f"clinic {p.clinic_id}: you act for clinic {actor.clinic_id}")
    with _tx(conn):
        if conn.execute("select 1 from clinic where clinic_id = %s", (p.clinic_id,)).fetchone() is None:
            raise NotFound(f"no clinic {p.clinic_id}")
        if conn.execute("select 1 from patient where code = %s", (p.code,)).fetchone():
            raise IntakeError(f"patient code {p.code} is taken")
        fields = {k: v for k, v in p.clinical().items() if k not in ("code", "clinic_id", "consent_care",
                                                                    "consent_research")}
        cols = ["clinic_id", "code", *fields]
        pid = int(conn.execute(
            f"insert into patient ({', '.join(cols)}) values ({', '.join(['%s'] * len(cols))}) returning patient_id",
            (p.clinic_id, p.code, *fields.values())).fetchone()[0])
        _set_identity(conn, pid, p.identity())
        for purpose, given in (("care", p.consent_care), ("research", p.consent_research)):
            if given is not None:
                conn.execute("insert into consent (patient_id, purpose, given_on) values (%s, %s, %s)",
                             (pid, purpose, given))
        audit(conn, actor, "create", "patient", patient_id=pid, clinic_id=p.clinic_id,
              detail="fields: " + ",".join(sorted(set(fields) | set(p.identity()))))
    return pid


def update_patient(conn: psycopg.Connection, actor: Actor, code: str, f: M.PatientFields) -> list[str]:
    """Set the given fields; returns their names (no field given: nothing changes)."""
    fields, ident = f.clinical(), f.identity()
    if not fields and not ident:
        raise IntakeError("nothing to update: give at least one field")
    with _tx(conn):
        pid, clinic = _patient(conn, actor, code, lock=True)
        if fields:
            conn.execute(f"update patient set {', '.join(f'{k} = %s' for k in fields)} where patient_id = %s",
                         (*fields.values(), pid))
        _set_identity(conn, pid, ident)
        changed = sorted(set(fields) | set(ident))
        audit(conn, actor, "update", "patient", patient_id=pid, clinic_id=clinic, detail="fields: " + ",".join(changed))
    return changed


@dataclass
class PatientRecord:
    """Everything recorded about one patient (identifiable: reading it is audited)."""

    patient: dict[str, Any]
    identity: dict[str, Any] | None
    consents: list[dict[str, Any]] = field(default_factory=list)
    courses: list[dict[str, Any]] = field(default_factory=list)
    assignments: list[dict[str, Any]] = field(default_factory=list)
    assessments: list[dict[str, Any]] = field(default_factory=list)
    pros: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("patient", "identity", "consents", "courses", "assignments",
                                              "assessments", "pros")}


def _rows(conn: psycopg.Connection, sql: str, args: Any) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql, args).fetchall()


def show_patient(conn: psycopg.Connection, actor: Actor, code: str, *, purpose: str = "show") -> PatientRecord:
    """The patient's record; audited (``purpose`` names the use: show, report, export)."""
    with _tx(conn):
        pid, clinic = _patient(conn, actor, code)
        audit(conn, actor, "read", "patient", patient_id=pid, clinic_id=clinic, detail=purpose)
        rec = PatientRecord(
            patient=_rows(conn, "select patient_id, clinic_id, code, etiology, affected_side, onset_date, "
                                "baseline_hb_grade, baseline_sunnybrook, planned_sessions, planned_minutes, created_at "
                                "from patient where patient_id = %s", (pid,))[0],
            identity=(_rows(conn, "select full_name, birth_date, contact from patient_identity where patient_id = %s",
                            (pid,)) or [None])[0],
            consents=_rows(conn, "select consent_id, purpose, given_on, withdrawn_on, document_ref, recorded_by, "
                                 "app.has_consent(patient_id, purpose) as in_force "
                                 "from consent where patient_id = %s order by given_on, consent_id", (pid,)),
            courses=_rows(conn, "select a.course_id, a.therapy_type, a.start_date, a.end_date, a.planned_sessions, "
                                "a.minutes_per_session, a.current_limit_ua, a.sessions_done, a.sessions_full_length, "
                                "a.sessions_done_pct, a.minutes_done_pct from course_adherence a "
                                "where a.patient_id = %s order by a.start_date", (pid,)),
            assignments=_rows(conn, "select assignment_id, device_id, valid_from, valid_to from device_assignment "
                                    "where patient_id = %s order by valid_from", (pid,)),
            assessments=_rows(conn, "select assessment_id, assessed_on, assessor, hb_grade, sunnybrook, "
                                    "sunnybrook_resting, sunnybrook_voluntary, sunnybrook_synkinesis, notes "
                                    "from clinical_assessment where patient_id = %s order by assessed_on", (pid,)),
            pros=_rows(conn, "select r.pro_id, r.instrument, r.score, i.score_min, i.score_max, i.higher_is_better, "
                             "r.item_answers, r.answered_at, r.source, r.session_id "
                             "from patient_reported_outcome r join pro_instrument i using (instrument) "
                             "where r.patient_id = %s order by r.answered_at", (pid,)))
    return rec


def audit_read(conn: psycopg.Connection, actor: Actor, code: str, purpose: str) -> None:
    """Record a read of the patient's identifiable data made elsewhere (the report, an export)
    before it happens; NotFound for a patient the actor may not read."""
    with _tx(conn):
        pid, clinic = _patient(conn, actor, code)
        audit(conn, actor, "read", "patient", patient_id=pid, clinic_id=clinic, detail=purpose)


def list_patients(conn: psycopg.Connection, actor: Actor, clinic_id: str | None = None) -> list[dict[str, Any]]:
    """Pseudonymous codes with clinical fields, courses and consent flags (no identity); audited."""
    clinic = actor.clinic_id or clinic_id
    if actor.clinic_id is not None and clinic_id not in (None, actor.clinic_id):
        raise NotFound(f"no clinic {clinic_id}")
    with _tx(conn):
        rows = _rows(conn, """
            select p.code, p.clinic_id, p.affected_side, p.etiology, p.onset_date, p.baseline_hb_grade,
                   p.baseline_sunnybrook,
                   (select c.therapy_type from therapy_course c where c.patient_id = p.patient_id
                     order by c.start_date desc limit 1) as course,
                   (select string_agg(d.device_id, ',') from device_assignment d where d.patient_id = p.patient_id
                     and d.valid_from <= now() and (d.valid_to is null or d.valid_to > now())) as device,
                   app.has_consent(p.patient_id, 'care') as care_consent,
                   app.has_consent(p.patient_id, 'research') as research_consent
            from patient p where %(c)s::text is null or p.clinic_id = %(c)s order by p.clinic_id, p.code""",
                     {"c": clinic})
        audit(conn, actor, "read", "patient_list", clinic_id=clinic, detail=f"{len(rows)} patients")
    return rows


# --- courses, assessments, PROs, consent ------------------------------------------------------

def _sync_plan(conn: psycopg.Connection, pid: int) -> None:
    """patient.planned_* (read by the 0007 views) = the plan of the patient's latest course."""
    conn.execute("update patient p set planned_sessions = c.planned_sessions, planned_minutes = c.minutes_per_session "
                 "from (select planned_sessions, minutes_per_session from therapy_course where patient_id = %s "
                 "      order by start_date desc limit 1) c where p.patient_id = %s", (pid, pid))


def add_course(conn: psycopg.Connection, actor: Actor, code: str, c: M.CourseIn) -> int:
    with _tx(conn):
        pid, clinic = _patient(conn, actor, code, lock=True)
        cid = int(conn.execute(
            "insert into therapy_course (patient_id, therapy_type, start_date, end_date, planned_sessions, "
            "minutes_per_session, current_limit_ua, notes, created_by) values (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "returning course_id",
            (pid, c.therapy_type, c.start_date, c.end_date, c.planned_sessions, c.minutes_per_session,
             c.current_limit_ua, c.notes, actor.name)).fetchone()[0])
        _sync_plan(conn, pid)
        audit(conn, actor, "create", "course", patient_id=pid, clinic_id=clinic, detail=f"course {cid}")
    return cid


def end_course(conn: psycopg.Connection, actor: Actor, code: str, course_id: int, end_date: date) -> None:
    with _tx(conn):
        pid, clinic = _patient(conn, actor, code, lock=True)
        cur = conn.execute("update therapy_course set end_date = %s where course_id = %s and patient_id = %s",
                           (end_date, course_id, pid))
        if cur.rowcount != 1:
            raise NotFound(f"no course {course_id} of patient {code}")
        audit(conn, actor, "update", "course", patient_id=pid, clinic_id=clinic, detail=f"course {course_id} ended")


def add_assessment(conn: psycopg.Connection, actor: Actor, code: str, a: M.AssessmentIn) -> int:
    with _tx(conn):
        pid, clinic = _patient(conn, actor, code)
        aid = int(conn.execute(
            "insert into clinical_assessment (patient_id, assessed_on, assessor, hb_grade, sunnybrook, "
            "sunnybrook_resting, sunnybrook_voluntary, sunnybrook_synkinesis, notes, created_by) "
            "values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) returning assessment_id",
            (pid, a.assessed_on, a.assessor, a.hb_grade, a.sunnybrook, a.sunnybrook_resting, a.sunnybrook_voluntary,
             a.sunnybrook_synkinesis, a.notes, actor.name)).fetchone()[0])
        audit(conn, actor, "create", "assessment", patient_id=pid, clinic_id=clinic, detail=f"assessment {aid}")
    return aid


def add_pro(conn: psycopg.Connection, actor: Actor, code: str, p: M.ProIn) -> int:
    with _tx(conn):
        pid, clinic = _patient(conn, actor, code)
        rid = int(conn.execute(
            "insert into patient_reported_outcome (patient_id, instrument, score, item_answers, answered_at, source, "
            "entered_by) values (%s, %s, %s, %s, %s, %s, %s) returning pro_id",
            (pid, p.instrument, p.score, p.item_answers, p.answered_at, p.source, actor.name)).fetchone()[0])
        audit(conn, actor, "create", "pro", patient_id=pid, clinic_id=clinic, detail=f"{p.instrument} {rid}")
    return rid


def give_consent(conn: psycopg.Connection, actor: Actor, code: str, c: M.ConsentIn) -> int:
    with _tx(conn):
        pid, clinic = _patient(conn, actor, code, lock=True)
        if conn.execute("select 1 from consent where patient_id = %s and purpose = %s and withdrawn_on is null",
                        (pid, c.purpose)).fetchone():
            raise IntakeError(f"patient {code} already has {c.purpose} consent (withdraw it first to record a new one)")
        cid = int(conn.execute("insert into consent (patient_id, purpose, given_on, document_ref, recorded_by) "
                               "values (%s, %s, %s, %s, %s) returning consent_id",
                               (pid, c.purpose, c.given_on, c.document_ref, actor.name)).fetchone()[0])
        audit(conn, actor, "create", "consent", patient_id=pid, clinic_id=clinic, detail=c.purpose)
    return cid


def withdraw_consent(conn: psycopg.Connection, actor: Actor, code: str, purpose: str, on: date) -> None:
    """Withdraw the consent in force from ``on`` (research views drop the patient from that day)."""
    if purpose not in ("care", "research"):
        raise IntakeError(f"purpose must be care or research, not {purpose!r}")
    with _tx(conn):
        pid, clinic = _patient(conn, actor, code, lock=True)
        cur = conn.execute("update consent set withdrawn_on = %s, withdrawn_recorded_at = now() "
                           "where patient_id = %s and purpose = %s and withdrawn_on is null", (on, pid, purpose))
        if cur.rowcount != 1:
            raise NotFound(f"patient {code} has no {purpose} consent to withdraw")
        audit(conn, actor, "update", "consent", patient_id=pid, clinic_id=clinic, detail=f"{purpose} withdrawn")


# --- device assignments -----------------------------------------------------------------------

def assign_device(conn: psycopg.Connection, actor: Actor, code: str, a: M.AssignmentIn) -> int:
    """The device goes to the patient from ``valid_from``; an open assignment of the device that
    began earlier ends there (the device moves on). Any other overlap is refused."""
    with _tx(conn):
        pid, clinic = _patient(conn, actor, code)
        # no FOR UPDATE here (a clinic login may not lock the device row): the 0014 trigger
        # locks it while it checks for overlaps
        dev = conn.execute("select clinic_id, status from device where device_id = %s", (a.device_id,)).fetchone()
        if dev is None or (actor.clinic_id is not None and dev[0] != actor.clinic_id):
            raise NotFound(f"no device {a.device_id}" + (f" in clinic {actor.clinic_id}" if actor.clinic_id else ""))
        if dev[0] != clinic:
            raise IntakeError(f"device {a.device_id} belongs to clinic {dev[0]}, patient {code} to {clinic}")
        if dev[1] != "active":
            raise IntakeError(f"device {a.device_id} is revoked")
        conn.execute("update device_assignment set valid_to = %s where device_id = %s and valid_to is null "
                     "and valid_from < %s", (a.valid_from, a.device_id, a.valid_from))
        aid = int(conn.execute("insert into device_assignment (device_id, patient_id, valid_from, valid_to, created_by) "
                               "values (%s, %s, %s, %s, %s) returning assignment_id",
                               (a.device_id, pid, a.valid_from, a.valid_to, actor.name)).fetchone()[0])
        audit(conn, actor, "create", "assignment", patient_id=pid, clinic_id=clinic,
              detail=f"device {a.device_id} assignment {aid}")
    return aid


def assign_from_now(conn: psycopg.Connection, actor: Actor, code: str, device_id: str) -> None:
    """`devices add --patient`: the device is the patient's from now, unless it already is."""
    row = conn.execute("select p.code from device_assignment a join patient p using (patient_id) "
                       "where a.device_id = %s and a.valid_to is null", (device_id,)).fetchone()
    if row is None or row[0] != code:
        assign_device(conn, actor, code, M.AssignmentIn(device_id=device_id, valid_from=datetime.now().astimezone()))


def unassign_device(conn: psycopg.Connection, actor: Actor, device_id: str, at: datetime) -> None:
    """End the device's open assignment at ``at``."""
    with _tx(conn):
        row = conn.execute("select a.assignment_id, a.patient_id, p.clinic_id from device_assignment a "
                           "join patient p using (patient_id) where a.device_id = %s and a.valid_to is null "
                           "for update of a", (device_id,)).fetchone()
        if row is None or (actor.clinic_id is not None and row[2] != actor.clinic_id):
            raise NotFound(f"device {device_id} has no open assignment")
        conn.execute("update device_assignment set valid_to = %s where assignment_id = %s", (at, row[0]))
        audit(conn, actor, "update", "assignment", patient_id=row[1], clinic_id=row[2],
              detail=f"device {device_id} assignment {row[0]} ended")


def cli_actor() -> Actor:
    import getpass

    return Actor(name=getpass.getuser() or "cli", channel="cli")


def audit_cli_read(dsn: str, code: str, purpose: str) -> None:
    """For a command that reads a patient's data on `dsn` (the report): the audit row first. An
    unknown patient writes none (the command itself then says it is unknown)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        try:
            audit_read(conn, cli_actor(), code, purpose)
        except NotFound:
            pass


def audit_cli_export(dsn: str, detail: str) -> None:
    """A de-identified export (research views): one audit row, no patient."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        audit(conn, cli_actor(), "export", "research_export", detail=detail)

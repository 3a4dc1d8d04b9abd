"""Commands: `mimetic patients | courses | assessments | pros ...`, `devices assign | unassign`,
and `mimetic clinic-api` (the clinic's HTTP API).

All go through :mod:`clinical.service` as the owner role, acting as the operating-system user
(``channel`` cli); every change and every read of identifiable data is audited.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime, timezone
from typing import Annotated, Any, Optional, TypeVar

import typer
from rich.table import Table

from mimetic.config import get_settings
from mimetic.console import console, err
from mimetic.console import fail as _fail

T = TypeVar("T")

Side = Annotated[Optional[str], typer.Option("--side", help="Affected side: L or R.")]
Etiology = Annotated[Optional[str], typer.Option(help="bell_palsy, post_surgical, stroke, ramsay_hunt, trauma, other.")]
Onset = Annotated[Optional[str], typer.Option("--onset", help="Onset date YYYY-MM-DD.")]
Hb = Annotated[Optional[int], typer.Option("--hb", help="Baseline House-Brackmann grade 1-6 (I-VI).")]
Sb = Annotated[Optional[int], typer.Option("--sunnybrook", help="Baseline Sunnybrook composite 0-100.")]
Name = Annotated[Optional[str], typer.Option("--name", help="Full name (identifying; kept apart).")]
Birth = Annotated[Optional[str], typer.Option("--birth-date", help="Birth date YYYY-MM-DD (identifying).")]
Contact = Annotated[Optional[str], typer.Option("--contact", help="Phone or e-mail (identifying).")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _actor():
    from .service import cli_actor

    return cli_actor()


def _run(fn: Callable[..., T], *args: Any) -> T:
    """Call a service function on an owner connection; a refused value exits with its message."""
    import psycopg

    from .model import IntakeError
    from .service import NotFound

    try:
        with psycopg.connect(get_settings().db_dsn(), autocommit=True) as conn:
            return fn(conn, _actor(), *args)
    except (IntakeError, NotFound) as exc:
        _fail(str(exc))
        raise AssertionError from exc   # unreachable: fail exits


def _build(model: type, **values: Any):
    from .model import IntakeError, build

    try:
        return build(model, **values)
    except IntakeError as exc:
        _fail(str(exc))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, default=str, indent=2))


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    from . import model as M

    patients = typer.Typer(no_args_is_help=True, help="Patients: intake, consent, record, erasure.")
    courses = typer.Typer(no_args_is_help=True, help="Therapy courses (the care plan).")
    assessments = typer.Typer(no_args_is_help=True, help="Clinician grades (House-Brackmann, Sunnybrook).")
    pros = typer.Typer(no_args_is_help=True, help="Patient-reported outcomes (FaCE, SAQ, GRC).")
    app.add_typer(patients, name="patients")
    app.add_typer(courses, name="courses")
    app.add_typer(assessments, name="assessments")
    app.add_typer(pros, name="pros")
    _register_api(app)

    @patients.command("add")
    def patients_add(code: Annotated[str, typer.Argument(help="Pseudonymous code, e.g. P-7F3K2.")],
                     clinic: Annotated[str, typer.Option("--clinic", help="Clinic id (must exist).")],
                     side: Side = None, etiology: Etiology = None, onset: Onset = None, hb: Hb = None,
                     sunnybrook: Sb = None, name: Name = None, birth_date: Birth = None, contact: Contact = None,
                     consent_care: Annotated[Optional[str], typer.Option(help="Date care consent was given.")] = None,
                     consent_research: Annotated[Optional[str], typer.Option(
                         help="Date research consent was given (research views include the patient).")] = None,
                     ) -> None:
        """Register a patient (one transaction: row, identity, consents)."""
        from .service import add_patient

        p = _build(M.PatientIn, code=code, clinic_id=clinic, affected_side=side, etiology=etiology,
                   onset_date=onset, baseline_hb_grade=hb, baseline_sunnybrook=sunnybrook, full_name=name,
                   birth_date=birth_date, contact=contact, consent_care=consent_care,
                   consent_research=consent_research)
        _run(add_patient, p)
        console.print(f"patient [bold]{code}[/] registered in clinic {clinic}")

    @patients.command("update")
    def patients_update(code: Annotated[str, typer.Argument()], side: Side = None, etiology: Etiology = None,
                        onset: Onset = None, hb: Hb = None, sunnybrook: Sb = None, name: Name = None,
                        birth_date: Birth = None, contact: Contact = None) -> None:
        """Change the given fields of a patient."""
        from .service import update_patient

        f = _build(M.PatientFields, affected_side=side, etiology=etiology, onset_date=onset, baseline_hb_grade=hb,
                   baseline_sunnybrook=sunnybrook, full_name=name, birth_date=birth_date, contact=contact)
        changed = _run(update_patient, code, f)
        console.print(f"patient {code}: {', '.join(changed)} updated")

    @patients.command("show")
    def patients_show(code: Annotated[str, typer.Argument()], as_json: AsJson = False) -> None:
        """The patient's whole record, identity included (the read is audited)."""
        from .service import show_patient

        rec = _run(show_patient, code)
        if as_json:
            _print_json(rec.to_json())
            return
        p, ident = rec.patient, rec.identity or {}
        console.print(f"[bold]{p['code']}[/] clinic {p['clinic_id']}  side {p['affected_side'] or '-'}  "
                      f"etiology {p['etiology'] or '-'}  onset {p['onset_date'] or '-'}")
        console.print(f"baseline House-Brackmann {p['baseline_hb_grade'] or '-'}, "
                      f"Sunnybrook {p['baseline_sunnybrook'] if p['baseline_sunnybrook'] is not None else '-'}")
        if ident:
            console.print(f"identity: {ident.get('full_name') or '-'}, born {ident.get('birth_date') or '-'}, "
                          f"{ident.get('contact') or '-'}", markup=False)
        for c in rec.consents:
            state = "in force" if c["in_force"] else f"withdrawn {c['withdrawn_on']}" if c["withdrawn_on"] else "-"
            console.print(f"consent {c['purpose']}: given {c['given_on']}, {state}")
        for c in rec.courses:
            limit = f", limit {c['current_limit_ua']:g} µA" if c["current_limit_ua"] is not None else ""
            console.print(f"course {c['course_id']}: {c['therapy_type']} {c['start_date']}.."
                          f"{c['end_date'] or 'open'}, {c['planned_sessions']} x {c['minutes_per_session']} min"
                          f"{limit}; done {c['sessions_done']} ({c['sessions_done_pct']} %), "
                          f"{c['sessions_full_length']} full length")
        for a in rec.assignments:
            console.print(f"device {a['device_id']}: {a['valid_from']:%Y-%m-%d %H:%M} .. "
                          f"{format(a['valid_to'], '%Y-%m-%d %H:%M') if a['valid_to'] else 'now'}")
        for a in rec.assessments:
            grades = ", ".join(x for x in (f"House-Brackmann {a['hb_grade']}" if a["hb_grade"] else "",
                                           f"Sunnybrook {a['sunnybrook']}" if a["sunnybrook"] is not None
                                           else "") if x)
            console.print(f"assessed {a['assessed_on']} by {a['assessor']}: {grades}", markup=False)
        for r in rec.pros:
            better = "higher" if r["higher_is_better"] else "lower"
            console.print(f"{r['instrument']} {r['score']:g} ({r['score_min']:g}..{r['score_max']:g}, {better} "
                          f"is better) {r['answered_at']:%Y-%m-%d %H:%M}, {r['source']}")

    @patients.command("list")
    def patients_list(clinic: Annotated[Optional[str], typer.Option("--clinic")] = None,
                      as_json: AsJson = False) -> None:
        """Patients (codes, clinical fields, current course and device, consents; no identity)."""
        from .service import list_patients

        rows = _run(list_patients, clinic)
        if as_json:
            _print_json(rows)
            return
        if not rows:
            err.print("no patients" + (f" in clinic {clinic}" if clinic else ""))
            return
        _table(["code", "clinic", "side", "HB", "course", "device", "care", "research"],
               [[r["code"], r["clinic_id"], r["affected_side"], r["baseline_hb_grade"], r["course"], r["device"],
                 "yes" if r["care_consent"] else "no", "yes" if r["research_consent"] else "no"] for r in rows])

    @patients.command("consent")
    def patients_consent(code: Annotated[str, typer.Argument()],
                         purpose: Annotated[str, typer.Option("--purpose", help="care or research.")],
                         given: Annotated[Optional[str], typer.Option("--given", help="Date given (today).")] = None,
                         document: Annotated[Optional[str], typer.Option(
                             "--document", help="Where the signed form is kept.")] = None) -> None:
        """Record a consent the patient gave."""
        from .service import give_consent

        c = _build(M.ConsentIn, purpose=purpose, given_on=given or date.today().isoformat(), document_ref=document)
        _run(give_consent, code, c)
        console.print(f"patient {code}: {purpose} consent recorded")

    @patients.command("withdraw")
    def patients_withdraw(code: Annotated[str, typer.Argument()],
                          purpose: Annotated[str, typer.Option("--purpose", help="care or research.")],
                          on: Annotated[Optional[str], typer.Option("--on", help="Date (today).")] = None) -> None:
        """Record the withdrawal of a consent (research views drop the patient from that day)."""
        from .service import withdraw_consent

        try:
            day = date.fromisoformat(on) if on else date.today()
        except ValueError:
            _fail(f"--on {on!r} is not a date YYYY-MM-DD")
        _run(withdraw_consent, code, purpose, day)
        console.print(f"patient {code}: {purpose} consent withdrawn from {day}")

    @patients.command("erase")
    def patients_erase(code: Annotated[str, typer.Argument()],
                       yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False) -> None:
        """Remove the patient's data from every table (audited without identifying data)."""
        from .erase import erase_patient, kafka_remainder

        if not yes:
            typer.confirm(f"erase every record of patient {code}? This cannot be undone", abort=True)
        out = _run(erase_patient, code)
        console.print(f"patient {code} erased: {out.sessions} sessions, {out.total} rows")
        for table, n in sorted(out.rows.items()):
            console.print(f"  {table:<28} {n:>9}")
        console.print("kept: the access and alert audit rows (internal number, no code or name) "
                      "and the device, with no patient.")
        console.print("Kafka still holds the device's records until retention ends:")
        for line in kafka_remainder(get_settings()):
            console.print(f"  {line}", markup=False)

    # --- courses ----------------------------------------------------------------------------
    @courses.command("add")
    def courses_add(code: Annotated[str, typer.Argument(help="Patient code.")],
                    therapy: Annotated[str, typer.Option("--type", help="microcurrent, biofeedback_exercise, "
                                                                        "acupuncture, massage, usual_care.")],
                    start: Annotated[str, typer.Option("--start", help="First day YYYY-MM-DD.")],
                    sessions: Annotated[int, typer.Option("--sessions", help="Planned sessions.")],
                    minutes: Annotated[int, typer.Option("--minutes", help="Minutes per session.")],
                    end: Annotated[Optional[str], typer.Option("--end", help="Last day (open if omitted).")] = None,
                    current_limit: Annotated[Optional[float], typer.Option(
                        "--current-limit-ua", help="Prescribed current limit µA (microcurrent: required).")] = None,
                    notes: Annotated[Optional[str], typer.Option("--notes")] = None) -> None:
        """Prescribe a therapy course (courses of one patient do not overlap)."""
        from .service import add_course

        c = _build(M.CourseIn, therapy_type=therapy, start_date=start, end_date=end, planned_sessions=sessions,
                   minutes_per_session=minutes, current_limit_ua=current_limit, notes=notes)
        cid = _run(add_course, code, c)
        console.print(f"patient {code}: course {cid} ({therapy}) from {start}")

    @courses.command("end")
    def courses_end(code: Annotated[str, typer.Argument()], course_id: Annotated[int, typer.Argument()],
                    on: Annotated[str, typer.Option("--on", help="Last day YYYY-MM-DD.")]) -> None:
        """Set a course's last day."""
        from .service import end_course

        try:
            day = date.fromisoformat(on)
        except ValueError:
            _fail(f"--on {on!r} is not a date YYYY-MM-DD")
        _run(end_course, code, course_id, day)
        console.print(f"course {course_id} ends {day}")

    # --- assessments and PROs -----------------------------------------------------------------
    @assessments.command("add")
    def assessments_add(code: Annotated[str, typer.Argument()],
                        on: Annotated[str, typer.Option("--on", help="Date YYYY-MM-DD.")],
                        assessor: Annotated[str, typer.Option("--assessor", help="Who graded.")],
                        hb: Annotated[Optional[int], typer.Option("--hb", help="House-Brackmann 1-6.")] = None,
                        sunnybrook: Annotated[Optional[int], typer.Option(help="Composite 0-100.")] = None,
                        resting: Annotated[Optional[int], typer.Option(help="Sunnybrook resting 0-20.")] = None,
                        voluntary: Annotated[Optional[int], typer.Option(help="Sunnybrook voluntary 20-100.")] = None,
                        synkinesis: Annotated[Optional[int], typer.Option(help="Sunnybrook synkinesis 0-15.")] = None,
                        notes: Annotated[Optional[str], typer.Option("--notes")] = None) -> None:
        """Record a clinician's grading."""
        from .service import add_assessment

        a = _build(M.AssessmentIn, assessed_on=on, assessor=assessor, hb_grade=hb, sunnybrook=sunnybrook,
                   sunnybrook_resting=resting, sunnybrook_voluntary=voluntary, sunnybrook_synkinesis=synkinesis,
                   notes=notes)
        aid = _run(add_assessment, code, a)
        console.print(f"patient {code}: assessment {aid} recorded")

    @pros.command("add")
    def pros_add(code: Annotated[str, typer.Argument()],
                 instrument: Annotated[str, typer.Option("--instrument", help="face, saq or grc.")],
                 score: Annotated[Optional[float], typer.Option(help="Total score (or give --items).")] = None,
                 items: Annotated[Optional[str], typer.Option(help="Item answers, comma-separated.")] = None,
                 at: Annotated[Optional[str], typer.Option("--at", help="When answered (ISO; now).")] = None) -> None:
        """Record a patient-reported outcome entered at the clinic."""
        from .service import add_pro

        try:
            answers = [int(x) for x in items.split(",")] if items else None
        except ValueError:
            _fail(f"--items {items!r}: give whole numbers separated by commas")
        p = _build(M.ProIn, instrument=instrument, score=score, item_answers=answers, answered_at=at or _now(),
                   source="clinic")
        rid = _run(add_pro, code, p)
        console.print(f"patient {code}: {instrument} score {p.score:g} recorded ({rid})")


def _register_api(app: typer.Typer) -> None:
    api = typer.Typer(no_args_is_help=True, help="The clinic HTTP API and its bearer tokens.")
    toks = typer.Typer(no_args_is_help=True, help="Bearer tokens of the clinic API (only hashes are kept).")
    app.add_typer(api, name="clinic-api")
    api.add_typer(toks, name="tokens")

    @api.command("serve")
    def api_serve() -> None:
        """Run the clinic API until SIGINT/SIGTERM (MIMETIC_CLINIC_API_HOST/PORT)."""
        from .api import run_api

        s = get_settings()
        console.print(f"clinic API on http://{s.clinic_api_host}:{s.clinic_api_port}/v1 "
                      "(OpenAPI: /v1/openapi.json)")
        run_api(s)

    @api.command("openapi")
    def api_openapi() -> None:
        """Print the clinic API's OpenAPI 3.1 document (JSON)."""
        from .api import openapi_doc

        _print_json(openapi_doc())

    @toks.command("add")
    def tokens_add(name: Annotated[str, typer.Argument(help="The clinic user (recorded as who acted).")],
                   clinic: Annotated[str, typer.Option("--clinic", help="Clinic id.")],
                   login: Annotated[str, typer.Option("--login", help="The clinic's database login "
                                                      "(`mimetic roles create NAME --group clinic`).")]) -> None:
        """Issue a token (printed once; only its SHA-256 is kept in the secrets directory)."""
        import psycopg

        from . import tokens

        try:
            with psycopg.connect(get_settings().db_dsn(), autocommit=True) as conn:
                token = tokens.add(get_settings(), conn, name, clinic, login)
        except tokens.TokenError as exc:
            _fail(str(exc))
        console.print("token (shown once, use as `Authorization: Bearer <token>`):")
        print(token)

    @toks.command("list")
    def tokens_list() -> None:
        """Token names with their clinic and login (never a token)."""
        from . import tokens

        for u in tokens.load(get_settings()):
            print(f"{u.name}\t{u.clinic_id}\t{u.login}")

    @toks.command("revoke")
    def tokens_revoke(name: Annotated[str, typer.Argument()]) -> None:
        """Revoke a token (refused from the next request on)."""
        from . import tokens

        try:
            tokens.revoke(get_settings(), name)
        except tokens.TokenError as exc:
            _fail(str(exc))
        console.print(f"token {name} revoked")


def register_devices(devices_app: typer.Typer) -> None:
    """`devices assign | unassign` (hooked into the `devices` group of ingest.cli)."""
    from . import model as M

    @devices_app.command("assign")
    def devices_assign(device: Annotated[str, typer.Argument(help="Device id.")],
                       patient: Annotated[str, typer.Option("--patient", help="Patient code.")],
                       start: Annotated[Optional[str], typer.Option(
                           "--from", help="From (ISO date or time; now). An open assignment of the device "
                                          "ends there.")] = None,
                       until: Annotated[Optional[str], typer.Option("--to", help="Until (exclusive; open).")] = None,
                       ) -> None:
        """Give a device to a patient from a date (sessions from then on are the patient's)."""
        from .service import assign_device

        a = _build(M.AssignmentIn, device_id=device, valid_from=start or _now(), valid_to=until)
        aid = _run(assign_device, patient, a)
        console.print(f"device {device} assigned to {patient} from {a.valid_from:%Y-%m-%d %H:%M} "
                      f"({'until ' + format(a.valid_to, '%Y-%m-%d %H:%M') if a.valid_to else 'open'}; {aid})")

    @devices_app.command("unassign")
    def devices_unassign(device: Annotated[str, typer.Argument(help="Device id.")],
                         at: Annotated[Optional[str], typer.Option("--at", help="When (ISO; now).")] = None) -> None:
        """End the device's current assignment."""
        from .service import unassign_device

        try:
            when = datetime.fromisoformat(at) if at else datetime.now(timezone.utc)
        except ValueError:
            _fail(f"--at {at!r} is not an ISO date or time")
        when = when if when.tzinfo else when.replace(tzinfo=timezone.utc)
        _run(unassign_device, device, when)
        console.print(f"device {device} unassigned at {when:%Y-%m-%d %H:%M}")


def _table(head: list[str], rows: list[list[Any]]) -> None:
    if not rows:
        return
    t = Table()
    for h in head:
        t.add_column(h, overflow="fold")   # wrap long values, never cut them
    for r in rows:
        t.add_row(*("-" if v is None else str(v) for v in r))
    console.print(t)

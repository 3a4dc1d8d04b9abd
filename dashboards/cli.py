"""Commands: `mimetic dashboards build|check|deploy`, `mimetic report`, `mimetic query`."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

import typer

dash_app = typer.Typer(help="Grafana dashboards, alert rules and data sources as code.", no_args_is_help=True)

RESEARCH_LOGIN = "research_export"


def _clinics(s, given: list[str] | None) -> list[str]:
    """The clinics given, else every clinic in the database (sorted)."""
    if given:
        return sorted(set(given))
    import psycopg

    with psycopg.connect(s.db_dsn()) as conn:
        return [r[0] for r in conn.execute("select clinic_id from clinic order by 1")]


@dash_app.command("build")
def build_cmd(
    out: Annotated[Path, typer.Option("--out", help="Output directory")],
    clinic: Annotated[list[str] | None, typer.Option("--clinic", help="Clinic id (one data source each); "
                                                     "repeatable; default: every clinic in the database")] = None,
    dashboards_path: Annotated[str, typer.Option("--dashboards-path", help="Where Grafana will find the dashboard "
                                                 "JSON (the provider's path)")] = "/var/lib/grafana/dashboards/mimetic",
) -> None:
    """Write dashboard JSON and Grafana provisioning files (deterministic)."""
    from mimetic.config import get_settings

    from .provisioning import build

    s = get_settings()
    for p in build(out, s, _clinics(s, clinic), dashboards_path):
        typer.echo(str(p))


@dash_app.command("check")
def check_cmd(
    clinic: Annotated[str | None, typer.Option("--clinic", help="Clinic whose login runs the clinic dashboards "
                                               "(default: the first clinic in the database)")] = None,
    since: Annotated[datetime | None, typer.Option("--from", help="Time range start (default: each dashboard's)")] = None,
    until: Annotated[datetime | None, typer.Option("--to", help="Time range end (default now)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print every result as JSON")] = False,
    show_sql: Annotated[bool, typer.Option("--sql", help="Print the expanded SQL of failures")] = False,
) -> None:
    """Run every panel, variable, annotation and alert query under its data source's read-only login."""
    from mimetic.config import get_settings

    from .check import check_all
    from .macros import TimeRange

    s = get_settings()
    clinic = clinic or (_clinics(s, None) or [None])[0]
    if clinic is None:
        from mimetic.where import nothing_found

        typer.echo("error: " + nothing_found("no clinic (give --clinic, or look elsewhere)", s), err=True)
        raise typer.Exit(2)
    tr = None
    if since is not None:
        tz = lambda t: t if t.tzinfo else t.replace(tzinfo=timezone.utc)  # noqa: E731
        tr = TimeRange(tz(since), tz(until) if until else datetime.now(timezone.utc))
    results = check_all(s, clinic, tr)
    bad = [r for r in results if not r.ok]
    if as_json:
        typer.echo(json.dumps([{"dashboard": r.dashboard, "panel": r.panel, "ref": r.ref, "login": r.login,
                                "ok": r.ok, "rows": r.rows, "ms": round(r.ms, 1), "columns": r.columns,
                                "error": r.error}
                               for r in results], indent=2))
    else:
        for r in results:
            mark = "ok  " if r.ok else "FAIL"
            extra = r.error or ("" if r.ok else f"columns {r.columns} != expected {list(r.expected)}")
            typer.echo(f"{mark} {r.dashboard:26} {r.panel[:44]:44} {r.login:28} {r.rows:6} rows {r.ms:7.1f} ms {extra}")
            if not r.ok and show_sql:
                typer.echo(r.sql)
        typer.echo(f"{len(results) - len(bad)}/{len(results)} queries ok")
    raise typer.Exit(1 if bad else 0)


@dash_app.command("deploy")
def deploy_cmd(
    url: Annotated[str, typer.Option("--url", help="Grafana base URL, e.g. http://127.0.0.1:3000")],
    token: Annotated[str | None, typer.Option("--token", help="Service account token (or $GRAFANA_TOKEN)")] = None,
    clinic: Annotated[list[str] | None, typer.Option("--clinic", help="Clinic ids (default: all)")] = None,
    update_passwords: Annotated[bool, typer.Option("--update-passwords", help="Send data source passwords to "
                                                   "existing data sources too")] = False,
    contact_email: Annotated[str | None, typer.Option("--contact-email", help="Alert e-mail address (default: "
                                                      "$MIMETIC_ALERT_EMAIL, else a placeholder)")] = None,
) -> None:
    """Push data sources, folders, dashboards, contact point and alert rules (idempotent)."""
    from mimetic.config import get_settings

    from .check import ensure_logins
    from .deploy import deploy

    token = token or os.environ.get("GRAFANA_TOKEN")
    if not token:
        raise typer.BadParameter("give --token or set GRAFANA_TOKEN")
    s = get_settings()
    clinics = _clinics(s, clinic)
    for c in clinics:
        ensure_logins(s, c)
    email = contact_email or os.environ.get("MIMETIC_ALERT_EMAIL") or "mimetic-oncall@example.invalid"
    for st in deploy(url, token, s, clinics, update_passwords, email):
        typer.echo(f"{st.action:9} {st.kind:12} {st.key}")


def report_cmd(
    patient: Annotated[str, typer.Option("--patient", help="Patient code, e.g. P-7F3K2")],
    out: Annotated[Path, typer.Option("--out", help="Output file: .png, .pdf or .html")],
    login: Annotated[str | None, typer.Option("--login", help="Read through this clinic login (row-level "
                                              "security applies); default the owner role")] = None,
) -> None:
    """A clinician's progress report for one patient (symmetry, synkinesis, adherence, comfort and safety)."""
    from mimetic.config import get_settings
    from processors.storage import roles

    from .report import make_report

    s = get_settings()
    dsn = roles.login_dsn(s, login) if login else s.db_dsn()
    try:
        from clinical.service import audit_cli_read

        audit_cli_read(dsn, patient, "report")   # the access audit (issue 14), before the read
        typer.echo(str(make_report(dsn, patient, out)))
    except LookupError as exc:
        from mimetic.where import nothing_found

        typer.echo(f"error: {nothing_found(str(exc), s, login)}", err=True)
        raise typer.Exit(2) from None
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def query_cmd(
    dataset: Annotated[str, typer.Argument(help="patients | sessions | session_muscle | balance | activations | "
                                           "envelopes")],
    out: Annotated[Path, typer.Option("--out", help="Output file (.csv or .parquet)")],
    fmt: Annotated[str | None, typer.Option("--format", help="csv | parquet (default: from the suffix)")] = None,
    therapy: Annotated[list[str] | None, typer.Option("--therapy", help="Session therapy type (repeatable)")] = None,
    etiology: Annotated[list[str] | None, typer.Option("--etiology", help="Etiology (repeatable)")] = None,
    site: Annotated[list[str] | None, typer.Option("--site", help="Pseudonymous site id (repeatable)")] = None,
    baseline_hb: Annotated[list[int] | None, typer.Option("--baseline-hb", help="Baseline House-Brackmann grade "
                                                          "(repeatable)")] = None,
    research_id: Annotated[list[str] | None, typer.Option("--research-id", help="Patient pseudonym (repeatable)")] = None,
    from_day: Annotated[int | None, typer.Option("--from-day", help="Days since the patient's first session, "
                                                 "from")] = None,
    to_day: Annotated[int | None, typer.Option("--to-day", help="... to (inclusive)")] = None,
    sessions: Annotated[str | None, typer.Option("--sessions", help="Session numbers, e.g. 1-10")] = None,
    login: Annotated[str, typer.Option("--login", help="Researcher login (created when missing)")] = RESEARCH_LOGIN,
) -> None:
    """Export a de-identified cohort (research schema, researcher role) to CSV or Parquet."""
    from mimetic.config import get_settings
    from processors.storage import roles

    from .query import Cohort, export

    s = get_settings()
    roles.ensure_login(s, login, "researcher")
    first = last = None
    if sessions:
        a, _, b = sessions.partition("-")
        first, last = int(a), int(b or a)
    cohort = Cohort(etiology or [], therapy or [], site or [], baseline_hb or [], research_id or [], from_day,
                    to_day, first, last)
    from clinical.service import audit_cli_export

    audit_cli_export(s.db_dsn(), f"{dataset} by {login}")   # the access audit (issue 14)
    n = export(roles.login_dsn(s, login), dataset, cohort, out, fmt)
    typer.echo(f"{n} rows -> {out}")
    if n == 0:
        from mimetic.where import nothing_found

        typer.echo("note: " + nothing_found("no rows for this cohort", s, login), err=True)


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    app.add_typer(dash_app, name="dashboards")
    app.command("report")(report_cmd)
    app.command("query")(query_cmd)

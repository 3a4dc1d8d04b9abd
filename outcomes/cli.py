"""`mimetic outcomes` (responder rates by course type with intervals) and
`mimetic bench outcomes` (coverage of those intervals over simulated cohorts)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

DEFINITIONS_TEXT = """\
Responder definitions, per therapy course (outcomes/definitions.py, 0016):

sEMG symmetry    per muscle, the n sessions of the course whose analysis gave
                 the pair an AI; a muscle counts with n >= 2; change = mean
                 |AI| of the first k - of the last k, k = min(3, n // 2);
                 responder when the mean change over muscles is >= 0.10.
clinician grade  House-Brackmann improves by >= 1 grade OR the Sunnybrook
                 composite rises by >= 10 points. Baseline: the last
                 assessment on or before the course start; latest: the last
                 one up to 28 days after the course end.
patient-reported FaCE total rises by >= 10 points OR the latest global rating
                 of change (-7..+7) is +4 "moderately better" or more.

Rates: responders / evaluable courses, 95 % Wilson score interval.
Differences: 95 % Newcombe hybrid score interval (method 10). Only patients
with research consent in force count. An sEMG amplitude ratio is not a
validated clinical grade; a 1-grade House-Brackmann change is within rater
error for some patients."""


def outcomes_cmd(
    definitions: Annotated[bool, typer.Option("--definitions", help="Print the definitions and exit")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
    site: Annotated[list[str] | None, typer.Option("--site", help="Pseudonymous research site id (S-...); "
                                                   "repeatable; default: every site")] = None,
    clinic: Annotated[list[str] | None, typer.Option("--clinic", help="Clinic id, as its research site; "
                                                     "repeatable")] = None,
) -> None:
    """Responder rates by therapy course type and definition, with 95 % intervals."""
    if definitions:
        typer.echo(DEFINITIONS_TEXT)
        return
    import psycopg

    from mimetic.config import get_settings
    from outcomes.store import course_results, site_of_clinic
    from outcomes.summary import format_table, summarise

    with psycopg.connect(get_settings().db_dsn()) as conn:
        sites = list(site or []) + [s for c in clinic or [] if (s := site_of_clinic(conn, c))]
        results = course_results(conn, sites if (site or clinic) else None)
    table = summarise(results)
    if as_json:
        typer.echo(json.dumps({
            "confidence": table.confidence,
            "rates": [{"definition": g.definition.value, "therapy_type": g.therapy_type, "courses": g.patients,
                       "n": g.rate.n, "responders": g.rate.successes, "rate": g.rate.estimate,
                       "low": g.rate.low, "high": g.rate.high} for g in table.rates],
            "differences": [{"definition": c.definition.value, "a": c.therapy_a, "b": c.therapy_b,
                             "difference": c.difference.estimate, "low": c.difference.low,
                             "high": c.difference.high} for c in table.comparisons]}, indent=1))
        return
    if not results:
        typer.echo("No therapy course of a research-consenting patient yet "
                   "(`mimetic patients`, or `mimetic simulate` with a cohort).")
        return
    for line in format_table(table):
        typer.echo(line)


def cohort_cmd(
    patients: Annotated[int, typer.Option("--patients", min=1, max=5000, help="Patients (course types in turn)")] = 150,
    seed: Annotated[int, typer.Option("--seed", help="Cohort seed")] = 14,
    clinic: Annotated[str, typer.Option("--clinic", help="Clinic id the patients belong to")] = "sim-cohort",
    days_ago: Annotated[int, typer.Option("--days-ago", min=21, max=3650,
                                          help="First course day, days before today")] = 40,
) -> None:
    """Enter a simulated cohort's clinical records (courses, grades, PROs; ingest.cohort) through the
    clinical service, and print the rates each definition should find (no sEMG sessions)."""
    import datetime as dt

    import psycopg

    from ingest.cohort import DEFAULT_EFFECTS, cohort, expected_rates
    from ingest.cohort_records import enter_cohort
    from mimetic.config import get_settings
    from outcomes.summary import LABEL

    group = cohort(patients, seed, DEFAULT_EFFECTS)
    with psycopg.connect(get_settings().db_dsn(), autocommit=True) as conn:
        taken = conn.execute("select count(*) from patient where code = any(%s)",
                             ([p.code for p in group],)).fetchone()[0]
        enter_cohort(conn, clinic, group, dt.date.today() - dt.timedelta(days=days_ago))
    typer.echo(f"{patients - taken} patients entered in clinic {clinic} ({taken} were there)")
    exp = expected_rates(DEFAULT_EFFECTS, 2000)
    typer.echo("True rates of this simulation (latent recovery; what each definition should find):")
    for t, e in exp.items():
        by = ", ".join(f"{LABEL[d]} {100 * v:.0f} %" for d, v in e.by_definition.items())
        typer.echo(f"  {t:<21} latent {100 * e.latent:3.0f} %: {by}")
    typer.echo(f"`mimetic outcomes --clinic {clinic}` shows what the records say.")


def bench_outcomes_cmd(
    seeds: Annotated[int, typer.Option("--seeds", min=1, help="Simulated cohorts")] = 200,
    patients: Annotated[int, typer.Option("--patients", min=3, help="Patients per cohort (course types in turn)")] = 90,
    draws: Annotated[int, typer.Option("--draws", min=100, help="Monte Carlo patients for the expected rates")] = 5000,
    out: Annotated[Path, typer.Option("--out", help="JSON result file")] = Path("bench/results/outcomes_coverage.json"),
) -> None:
    """Coverage of the 95 % Wilson intervals over simulated cohorts (ingest.cohort defaults)."""
    from ingest.cohort import DEFAULT_EFFECTS, expected_rates
    from outcomes.coverage import coverage
    from outcomes.summary import LABEL

    t0 = time.monotonic()
    c = coverage(seeds, patients, DEFAULT_EFFECTS, draws)
    exp = expected_rates(DEFAULT_EFFECTS, draws)
    elapsed = time.monotonic() - t0
    typer.echo(f"{seeds} cohorts of {patients} patients, 95 % Wilson intervals ({elapsed:.0f} s)")
    typer.echo(f"{'def':<7}{'course type':<22}{'latent %':>9}{'expected %':>11}{'covers exp':>11}{'covers lat':>11}")
    rows = []
    for (d, t), v in c.covered.items():
        e = exp[t]
        typer.echo(f"{LABEL[d]:<7}{t:<22}{100 * e.latent:>9.1f}{100 * e.by_definition[d]:>11.1f}"
                   f"{100 * v:>10.1f}%{100 * c.covered_latent[(d, t)]:>10.1f}%")
        rows.append({"definition": d.value, "therapy_type": t, "latent": e.latent,
                     "expected": e.by_definition[d], "coverage": v, "coverage_of_latent": c.covered_latent[(d, t)]})
    typer.echo(f"overall coverage of the expected rates: {100 * c.overall:.1f}% (nominal 95%)")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"seeds": seeds, "patients": patients, "draws": draws, "seconds": round(elapsed, 1),
                               "effects": DEFAULT_EFFECTS, "overall": c.overall, "cells": rows},
                              indent=1, sort_keys=True) + "\n")
    typer.echo(f"wrote {out}")


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    app.command("outcomes")(outcomes_cmd)
    app.command("cohort")(cohort_cmd)
    bench_app.command("outcomes")(bench_outcomes_cmd)

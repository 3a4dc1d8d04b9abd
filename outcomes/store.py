"""Reading outcomes from the database: the consent-gated research views of migration 0016."""

from __future__ import annotations

import psycopg

from outcomes.summary import PatientResult


def course_results(conn: psycopg.Connection, sites: list[str] | None = None) -> list[PatientResult]:
    """Every course of a research-consenting patient with its three verdicts (research.course_outcome),
    of the given pseudonymous sites only when ``sites`` is given."""
    rows = conn.execute("select therapy_type, semg_responder, grade_responder, pro_responder "
                        "from research.course_outcome where not %(only)s or site_id = any(%(sites)s) "
                        "order by research_id, course_number",
                        {"only": sites is not None, "sites": list(sites or [])}).fetchall()
    return [PatientResult(t, semg, grade, pro) for t, semg, grade, pro in rows]


def sql_rates(conn: psycopg.Connection) -> dict[tuple[str, str], tuple[int, int, int, float | None, float, float]]:
    """research.outcome_rate by (definition, course type): courses, n, responders, rate and interval in %."""
    rows = conn.execute("select definition, therapy_type, courses, n, responders, rate_pct, ci_low_pct, ci_high_pct "
                        "from research.outcome_rate").fetchall()
    return {(d, t): (c, n, r, None if rate is None else float(rate), float(lo), float(hi))
            for d, t, c, n, r, rate, lo, hi in rows}


def site_of_clinic(conn: psycopg.Connection, clinic_id: str) -> str | None:
    """The pseudonymous research site id of a clinic (owner only: it reads the salt)."""
    row = conn.execute("select 'S-' || left(encode(sha256(convert_to(s.value || ':clinic:' || %s, 'UTF8')), 'hex'), 8) "
                       "from app.secret s where s.name = 'pseudonym_salt'", (clinic_id,)).fetchone()
    return row[0] if row else None

"""Reading outcomes from the database: the consent-gated research views of migration 0016."""

from __future__ import annotations

import psycopg

from outcomes.summary import PatientResult


def course_results(conn: psycopg.Connection) -> list[PatientResult]:
    """Every course of a research-consenting patient with its three verdicts (research.course_outcome)."""
    rows = conn.execute("select therapy_type, semg_responder, grade_responder, pro_responder "
                        "from research.course_outcome order by research_id, course_number").fetchall()
    return [PatientResult(t, semg, grade, pro) for t, semg, grade, pro in rows]


def sql_rates(conn: psycopg.Connection) -> dict[tuple[str, str], tuple[int, int, int, float | None, float, float]]:
    """research.outcome_rate by (definition, course type): courses, n, responders, rate and interval in %."""
    rows = conn.execute("select definition, therapy_type, courses, n, responders, rate_pct, ci_low_pct, ci_high_pct "
                        "from research.outcome_rate").fetchall()
    return {(d, t): (c, n, r, None if rate is None else float(rate), float(lo), float(hi))
            for d, t, c, n, r, rate, lo, hi in rows}

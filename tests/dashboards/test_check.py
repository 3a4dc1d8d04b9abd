"""Every panel, variable, annotation and alert query runs against the real database, filled by a
simulated clinic, under its data source's read-only login, with Grafana's macros expanded."""

from __future__ import annotations

import psycopg
import pytest

from dashboards.check import check_all, check_dashboard, ensure_logins, resolve_variables
from dashboards.definitions import clinic_progress, research_cohort
from processors.storage import roles

from .conftest import Filled

pytestmark = pytest.mark.stack


def test_every_query_runs_under_its_role_with_the_expected_columns(filled: Filled) -> None:
    results = check_all(filled.settings, filled.clinic_id, filled.time_range)
    assert len(results) > 50
    failures = [(r.dashboard, r.panel, r.error, r.columns, r.expected) for r in results if not r.ok]
    assert not failures, failures
    empty = [(r.dashboard, r.panel) for r in results if r.rows == 0 and not r.may_be_empty]
    assert not empty, empty
    logins = {r.dashboard: r.login for r in results}
    assert logins["mimetic-clinic-progress"] == "grafana_clinic_dash_clinic"
    assert logins["mimetic-research-cohort"] == "grafana_researcher"
    assert logins["mimetic-ops-fleet"] == logins["alert-rules"] == "grafana_operator"
    # the fleet saw the injected faults
    fleet = {r.panel: r.rows for r in results if r.dashboard == "mimetic-ops-fleet"}
    assert fleet["Alert history"] > 0 and fleet["Over-current events"] > 0


def test_the_check_catches_a_query_outside_the_role(filled: Filled) -> None:
    logins = ensure_logins(filled.settings, filled.clinic_id)
    with psycopg.connect(roles.login_dsn(filled.settings, logins["clinic"].login), autocommit=True) as conn:
        bad = [r for r in check_dashboard(conn, research_cohort(), "clinic", filled.time_range) if not r.ok]
    assert bad and all("InsufficientPrivilege" in (r.error or "") for r in bad)


def test_clinic_variables_see_only_their_clinic(filled: Filled) -> None:
    s = filled.settings
    with psycopg.connect(s.db_dsn(), autocommit=True) as conn:
        conn.execute("insert into clinic (clinic_id, name) values ('other-clinic', 'Other') on conflict do nothing")
        conn.execute("insert into patient (clinic_id, code) values ('other-clinic', 'P-OTHER1') "
                     "on conflict do nothing")
    logins = ensure_logins(s, filled.clinic_id)
    with psycopg.connect(roles.login_dsn(s, logins["clinic"].login), autocommit=True) as conn:
        v = resolve_variables(conn, clinic_progress().to_json(), filled.time_range)
    assert v["clinic"].options == [filled.clinic_id]
    assert sorted(v["patient"].options) == sorted(filled.codes) and "P-OTHER1" not in v["patient"].options


def test_check_command(filled: Filled, monkeypatch) -> None:
    from typer.testing import CliRunner

    from mimetic.cli import app
    from mimetic.config import get_settings

    monkeypatch.setenv("MIMETIC_PG_DATABASE", filled.settings.pg_database)
    get_settings.cache_clear()
    try:
        res = CliRunner().invoke(app, ["dashboards", "check", "--clinic", filled.clinic_id,
                                       "--from", filled.time_range.start.isoformat()])
    finally:
        get_settings.cache_clear()
    assert res.exit_code == 0, res.output
    assert res.output.strip().endswith("queries ok") and "FAIL" not in res.output

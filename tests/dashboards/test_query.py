"""`mimetic query`: a cohort exported through the researcher role; identifying columns are out of reach."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from dashboards.query import DATASETS, Cohort, export
from mimetic.cli import app
from processors.storage import roles

from .conftest import Filled

pytestmark = pytest.mark.stack

IDENTIFYING = {"code", "patient_code", "patient_id", "full_name", "birth_date", "contact", "device_id",
               "session_id", "started_at", "ended_at", "onset_date", "session_date", "clinic_id", "secret_hash"}


def _researcher(s) -> str:
    roles.ensure_login(s, "research_export", "researcher")
    return roles.login_dsn(s, "research_export")


def test_export_cohort_csv_and_parquet(filled: Filled, tmp_path: Path, monkeypatch) -> None:
    s = filled.settings
    dsn = _researcher(s)
    codes = set(filled.codes) | set(filled.sim.device_ids)
    for name in DATASETS:
        n = export(dsn, name, Cohort(first_session=1, last_session=2), tmp_path / f"{name}.parquet")
        t = pq.read_table(tmp_path / f"{name}.parquet")
        assert t.num_rows == n > 0, name
        assert not IDENTIFYING & set(t.schema.names), (name, t.schema.names)
        for col in t.schema.names:
            if t.schema.field(col).type == "string":
                assert not codes & set(t.column(col).to_pylist()), (name, col)
        if "session_number" in t.schema.names:
            assert set(t.column("session_number").to_pylist()) <= {1, 2}
    # a cohort by therapy, to CSV through the command
    monkeypatch.setenv("MIMETIC_PG_DATABASE", s.pg_database)
    from mimetic.config import get_settings
    get_settings.cache_clear()
    res = CliRunner().invoke(app, ["query", "session_muscle", "--out", str(tmp_path / "sm.csv"),
                                   "--therapy", "microcurrent"])
    get_settings.cache_clear()
    assert res.exit_code == 0, res.output
    t = pacsv.read_csv(tmp_path / "sm.csv")
    assert t.num_rows > 0 and set(t.column("therapy_type").to_pylist()) == {"microcurrent"}
    assert {"research_id", "muscle", "ai", "ratio", "synkinesis"} <= set(t.schema.names)


def test_researcher_cannot_read_identifying_columns(filled: Filled) -> None:
    s = filled.settings
    with psycopg.connect(_researcher(s), autocommit=True) as conn:
        for q in ("select code from patient", "select full_name, birth_date from patient_identity",
                  "select device_id from device", "select patient_id, started_at from therapy_session",
                  "select session_id, device_id from session_summary", "select * from patient_progress",
                  "select * from app.patient_pseudo", "select value from app.secret",
                  "select device_id from envelope limit 1"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(q)
        cols = {r[0] for r in conn.execute(
            "select column_name from information_schema.columns where table_schema = 'research'")}
        assert cols and not IDENTIFYING & cols, IDENTIFYING & cols
        # research ids are pseudonyms, not the codes
        rids = {r[0] for r in conn.execute("select research_id from research.patient")}
        assert len(rids) >= len(filled.codes) and not rids & set(filled.codes)

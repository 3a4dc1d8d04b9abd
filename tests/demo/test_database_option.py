"""The global `--database` option and errors that find nothing: every command reaches the
database it is pointed at, and an empty answer names the database and login it looked in and
the command line that reads the demo's database instead."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from typer.testing import CliRunner

from ingest import registry
from mimetic.cli import app
from mimetic.config import Settings, get_settings
from mimetic.db import drop_database, fresh_database
from mimetic.db.migrate import migrate

pytestmark = pytest.mark.stack


@pytest.fixture
def empty_and_demo(settings: Settings, monkeypatch) -> Iterator[tuple[Settings, str]]:
    """A second, empty (migrated) database; the test database marked as a demo's; a device in it."""
    monkeypatch.delenv("MIMETIC_PG_DATABASE", raising=False)
    empty = settings.model_copy(update={"pg_database": f"{settings.pg_database}_empty"})
    fresh_database(empty)
    migrate(empty.db_dsn())
    with psycopg.connect(settings.db_dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("comment on database {} is 'mimetic demo (test)'").format(
            sql.Identifier(settings.pg_database)))
        if not conn.execute("select 1 from device where device_id = 'dbopt-001'").fetchone():
            registry.add_device(conn, clinic_id="dbopt-clinic", device_id="dbopt-001", patient_code="P-DBOP1",
                                kdf_n=2**10)
    try:
        yield empty, settings.pg_database
    finally:
        with psycopg.connect(settings.db_dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("comment on database {} is null").format(sql.Identifier(settings.pg_database)))
        drop_database(empty)
        get_settings.cache_clear()


def _run(*args: str):
    res = CliRunner().invoke(app, list(args))
    return res, res.output + (res.stderr if res.stderr_bytes is not None else "")


def test_every_command_reads_the_database_given(empty_and_demo) -> None:
    empty, demo_db = empty_and_demo
    res, out = _run("--database", demo_db, "devices", "list", "--json")
    assert res.exit_code == 0 and '"dbopt-001"' in out, out
    assert get_settings().pg_database == demo_db

    # nothing found: where it looked (database, server, login) and how to read the demo's data
    res, out = _run("--database", empty.pg_database, "devices", "list")
    assert res.exit_code == 0
    flat = " ".join(out.split())
    assert f"no devices in database {empty.pg_database} on {empty.pg_host}:{empty.pg_port} as {empty.pg_user}" in flat
    assert demo_db in flat and "--database" in flat

    res, out = _run("--database", empty.pg_database, "report", "--patient", "P-DBOP1", "--out", "/tmp/x.pdf")
    flat = " ".join(out.split())
    assert res.exit_code == 2
    assert f"no patient 'P-DBOP1' visible to this login in database {empty.pg_database}" in flat
    assert f"as {empty.pg_user}" in flat and demo_db in flat

    res, out = _run("--database", empty.pg_database, "dashboards", "check")
    flat = " ".join(out.split())
    assert res.exit_code == 2 and f"no clinic (give --clinic, or look elsewhere) in database {empty.pg_database}" in flat

    res, out = _run("--database", empty.pg_database, "watch", "--patient", "P-DBOP1")
    flat = " ".join(out.split())
    assert res.exit_code == 1 and f"no device of patient 'P-DBOP1' in database {empty.pg_database}" in flat

    # without the option, the environment's database again (the override does not stick)
    _run("config")
    assert get_settings().pg_database == Settings().pg_database


def test_a_database_that_does_not_exist_is_named() -> None:
    from mimetic.where import command_with_database

    assert command_with_database("mimetic_demo", ["--database", "x", "report", "--patient", "P-1"]).endswith(
        "mimetic --database mimetic_demo report --patient P-1")
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "mimetic.cli", "--database", "no_such_db_nc", "devices", "list"],
                       capture_output=True, text=True, timeout=120)
    flat = " ".join(r.stderr.split())
    assert r.returncode == 1 and "cannot use database no_such_db_nc on" in flat and "does not exist" in flat

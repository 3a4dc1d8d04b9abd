"""The storage commands, through typer, against the test database."""

from __future__ import annotations

import json
import uuid

import pytest
import typer
from typer.testing import CliRunner

from mimetic.config import Settings, get_settings
from processors.storage.cli import register
from processors.storage.roles import drop_login, password_file

pytestmark = pytest.mark.stack


@pytest.fixture
def app(settings: Settings, monkeypatch: pytest.MonkeyPatch):
    for key, value in settings.as_env().items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    root, bench = typer.Typer(), typer.Typer()
    root.add_typer(bench, name="bench")
    register(root, bench)
    yield root
    get_settings.cache_clear()


def test_jobs_and_roles_commands(app, settings: Settings) -> None:
    runner = CliRunner()
    out = runner.invoke(app, ["jobs", "retention"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["timescaledb"]["license"] in ("apache", "timescale")
    out = runner.invoke(app, ["jobs", "rollup"])
    assert out.exit_code == 0, out.output
    assert "envelope_1m" in json.loads(out.output)
    name = f"t{uuid.uuid4().hex[:6]}_ops"
    try:
        out = runner.invoke(app, ["roles", "create", name, "--group", "operator"])
        assert out.exit_code == 0, out.output
        secret = password_file(settings, name).read_text().strip()
        assert secret not in out.output and str(password_file(settings, name)) in out.output
        out = runner.invoke(app, ["roles", "list"])
        assert f"{name}\tmimetic_operator" in out.output
        out = runner.invoke(app, ["roles", "create", name, "--group", "clinic"])   # clinic needs --clinic
        assert out.exit_code != 0
        # an existing role keeps its password unless --rotate; the owner is never touched
        out = runner.invoke(app, ["roles", "create", name, "--group", "operator"])
        assert out.exit_code == 2 and "--rotate" in out.output
        assert password_file(settings, name).read_text().strip() == secret
        out = runner.invoke(app, ["roles", "create", name, "--group", "operator", "--rotate"])
        assert out.exit_code == 0, out.output
        assert password_file(settings, name).read_text().strip() != secret
        out = runner.invoke(app, ["roles", "create", settings.pg_user, "--group", "operator", "--rotate"])
        assert out.exit_code == 2 and "owner" in out.output
    finally:
        drop_login(settings, name)

"""`mimetic demo` end to end, as a newcomer meets it: a small clinic through the real
pipeline, a results table that fits 80 columns, reports and dashboards left in the output
folder, and every command printed at the end run as printed and finding the demo's data."""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg
import pytest

from mimetic.config import REPO_ROOT, Settings
from mimetic.db import drop_database
from mimetic.kafka_admin import delete_topics
from mimetic.net import free_loopback_port

pytestmark = pytest.mark.stack


def _commands(output: str) -> list[str]:
    """The shell commands after 'Explore it', joined over their backslash continuations."""
    lines = output.split("Explore it", 1)[1].splitlines()[1:]
    cmds: list[str] = []
    cont = False
    for ln in lines:
        if cont:
            cmds[-1] += " " + ln.strip().rstrip("\\").strip()
        elif ln.startswith("  bin/mimetic "):
            cmds.append(ln.strip().rstrip("\\").strip())
        else:
            break
        cont = ln.rstrip().endswith("\\")
    return cmds


def test_demo_leaves_pictures_and_runnable_commands(settings: Settings, tmp_path: Path) -> None:
    db = f"{settings.pg_database}_demo"
    out = Path(tempfile.mkdtemp(prefix="demo-", dir="/tmp")) / "out"  # short paths: commands fit 80 columns
    env = {**os.environ, "COLUMNS": "80", "MIMETIC_GATEWAY_PORT": str(free_loopback_port()),
           "MIMETIC_WORKER_WEB_PORT": str(free_loopback_port())}
    env.pop("MIMETIC_PG_DATABASE", None)
    demo = settings.model_copy(update={"pg_database": db})
    try:
        res = subprocess.run(["bin/mimetic", "--database", db, "demo", "--patients", "2", "--sessions", "2",
                              "--duration", "20", "--out", str(out)], cwd=REPO_ROOT, env=env,
                             capture_output=True, text=True, timeout=600)
        text = res.stdout + res.stderr
        assert res.returncode == 0, text[-4000:]

        # the table and everything else fit 80 columns, nothing cut
        assert max(len(ln) for ln in res.stdout.splitlines()) <= 80, res.stdout
        assert "…" not in res.stdout
        rows = [ln for ln in res.stdout.splitlines() if re.match(r"^P-[0-9A-Z]{5} ", ln)]
        assert len(rows) == 2, res.stdout
        for ln in rows:  # code, side, sessions, measured and true |AI| first->last, yes/no pairs, faults, alerts
            assert re.match(r"^P-[0-9A-Z]{5}\s+[LR]\s+2\s+\d\.\d\d->\d\.\d\d\s+\d\.\d\d->\d\.\d\d\s+"
                            r"(yes|no|\?)/(yes|no)\s+(yes|no)/(yes|no)\s+\d+/\d+\s+\d+$", ln), ln
        codes = [ln.split()[0] for ln in rows]

        # alerts: raised against injected per type, and none that no injected fault explains
        summary = re.search(r"^(\d+)/(\d+) injected faults raised; (\d+) unexplained of (\d+) alerts$",
                            res.stdout, re.M)
        assert summary, res.stdout
        kinds = {m[1]: tuple(map(int, m.groups()[1:])) for m in re.finditer(
            r"^([a-z_]+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)$", res.stdout, re.M)}
        assert kinds and sum(k[1] for k in kinds.values()) == int(summary[1]), res.stdout
        assert int(summary[3]) == 0 and all(k[3] == 0 for k in kinds.values()), res.stdout
        assert int(summary[2]) >= 1  # the demo's default fault probability injects some
        print("\n".join(res.stdout.split("alerts: raised against injected faults", 1)[1].splitlines()[:16]))

        # pictures: each patient's report as PDF and PNG, and the built dashboards
        for code in codes:
            pdf, png = out / "reports" / f"{code}.pdf", out / "reports" / f"{code}.png"
            assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 20_000
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 50_000
        boards = list((out / "grafana").rglob("*.json"))
        assert len(boards) >= 4 and any((out / "grafana" / "provisioning").rglob("*.yaml"))
        assert str(out) in res.stdout and db in res.stdout

        # every printed command runs as printed and finds the demo's data
        cmds = _commands(res.stdout)
        assert [c.split()[3] for c in cmds] == ["report", "query", "dashboards", "devices"], cmds
        run_env = {k: v for k, v in env.items() if k != "COLUMNS"}
        for cmd in cmds:
            assert f"--database {db}" in cmd
            r = subprocess.run(["bash", "-c", cmd], cwd=REPO_ROOT, env=run_env, capture_output=True, text=True,
                               timeout=300)
            assert r.returncode == 0, f"{cmd}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
            if " report " in cmd:
                html = out / f"{codes[0]}.html"
                assert html.exists() and codes[0] in html.read_text()
            elif " query " in cmd:
                with open(out / "session_muscle.csv", newline="") as f:
                    assert len(list(csv.DictReader(f))) >= 2 * 2 * 2  # patients x sessions x muscles (>= 2)
            elif " dashboards check" in cmd:
                assert re.search(r"(\d+)/\1 queries ok", r.stdout), r.stdout[-2000:]
            else:
                assert all(c.split("-")[0] for c in codes) and r.stdout.count("demo7-") >= 2, r.stdout
        with psycopg.connect(demo.db_dsn(), autocommit=True) as conn:
            comment = conn.execute("select shobj_description(oid, 'pg_database') from pg_database "
                                   "where datname = %s", (db,)).fetchone()[0]
        assert comment.startswith("mimetic demo")
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)
        drop_database(demo)
        delete_topics(settings, f"demo-{db.replace('_', '-')}-")

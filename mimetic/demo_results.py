"""What the demo leaves behind: the results table (80 columns), each patient's
progress report, the built dashboards, and the commands to explore the same data.

The table compares what the pipeline measured (m) with the simulator's truth (t).
Its headers are short and explained by a legend under it, so that it fits an
80-column terminal or log file without cutting a code or a number.
"""

from __future__ import annotations

import math
import textwrap
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from rich import box
from rich.table import Table

from clinical.service import Actor
from dashboards.report.symmetry import Point, semg_responder
from mimetic.config import Settings
from mimetic.where import mimetic_command, repo_relative
from outcomes.definitions import SEMG_END_SESSIONS, SEMG_MIN_IMPROVEMENT, SemgOutcome

WIDTH = 80
DEMO_ACTOR = Actor(name="demo", channel="demo")  # the demo's reads of patient data, in the access audit
LEGEND = (
    "aff: affected side. |AI|: mean absolute asymmetry index over the muscles, first -> last "
    f"valid sessions (up to {SEMG_END_SESSIONS} at each end) of the latest course, as in the "
    "progress report's responder line; t at the same muscles and sessions (0 = symmetric; ? = not "
    "evaluable). resp: the sEMG responder definition (outcomes.definitions: |AI| fell by at least "
    f"{SEMG_MIN_IMPROVEMENT:.2f}). syn: synkinesis. faults: injected fault kinds raised as alerts / "
    "injected. alerts: alert episodes raised."
)


@dataclass(frozen=True)
class PatientRow:
    """One line of the results table."""

    code: str
    affected_side: str
    sessions: int
    ai_measured: tuple[float | None, float | None]
    ai_truth: tuple[float | None, float | None]
    responder: tuple[bool | None, bool]
    synkinesis: tuple[bool, bool]
    faults: tuple[int, int]  # kinds raised, kinds injected
    alerts: int


def patient_rows(s: Settings, truth: dict[str, Any]) -> list[PatientRow]:
    """Measured values from the database next to the simulator's truth, per patient. The measured
    |AI| and responder are the progress report's own (`dashboards.report.model.load(...).semg`), the
    truth goes through the same definition at the same muscles and sessions."""
    from dashboards.report.model import load
    from ingest.simulator import FAULT_ALERT

    with psycopg.connect(s.db_dsn(), autocommit=True) as conn:
        rows = conn.execute(
            "select ss.device_id, ss.session_id::text, m.muscle, m.ai, m.synkinesis_flag "
            "from session_summary ss join session_muscle_summary m using (session_id)").fetchall()
        alerts = conn.execute("select device_id, alert_type from alert").fetchall()
        reported = {}
        for p in truth["patients"]:
            d = load(conn, p["code"], DEMO_ACTOR)
            reported[p["code"]] = (d.semg, d.responder_series)
    measured: dict[str, dict[str, dict[str, tuple]]] = defaultdict(lambda: defaultdict(dict))
    for device, session, muscle, ai, syn in rows:
        measured[device][session][muscle] = (ai, syn)
    raised: dict[str, Counter] = defaultdict(Counter)
    for device, kind in alerts:
        raised[device][kind] += 1

    out = []
    for p in truth["patients"]:
        dev, sessions = p["device_id"], p["sessions"]
        m, used = reported[p["code"]]
        t = truth_outcome(sessions, used)
        expected = {FAULT_ALERT[f["type"]] for sess in sessions for f in sess["faults"] if f["type"] in FAULT_ALERT}
        out.append(PatientRow(
            code=p["code"], affected_side=p["affected_side"], sessions=len(measured[dev]),
            ai_measured=(m.first_abs_ai, m.last_abs_ai), ai_truth=(t.first_abs_ai, t.last_abs_ai),
            responder=(m.responder, bool(p["responder"])),
            synkinesis=(any(v[1] for sess in measured[dev].values() for v in sess.values()), bool(p["synkinesis"])),
            faults=(len(expected & set(raised[dev])), len(expected)), alerts=sum(raised[dev].values())))
    return out


def truth_outcome(sessions: list[dict[str, Any]], used: dict[str, list[Point]]) -> SemgOutcome:
    """The simulator's true AI through the sEMG responder definition at the muscles and sessions
    the measurement used (`ReportData.responder_series`), so the m and t columns differ only by
    measurement error (session n = the n-th simulated session)."""
    series: dict[str, list[Point]] = defaultdict(list)
    for muscle, pts in used.items():
        for pt in pts:
            v = sessions[pt.session_number - 1]["muscles"].get(muscle, {}).get("ai") \
                if pt.session_number <= len(sessions) else None
            if v is not None:
                series[muscle].append(Point(pt.session_number, float(v), math.nan))
    return semg_responder(series)


def results_table(rows: list[PatientRow]) -> Table:
    """The per-patient table: about 77 columns wide, nothing truncated."""
    t = Table(title="mimetic demo: measured (m) against the simulator's truth (t)", box=box.SIMPLE_HEAD,
              show_edge=False, pad_edge=False, padding=(0, 1), collapse_padding=True, title_justify="left")
    for col, justify in (("patient", "left"), ("aff", "left"), ("sess", "right"), ("|AI| m", "left"),
                         ("|AI| t", "left"), ("resp m/t", "left"), ("syn m/t", "left"), ("faults", "right"),
                         ("alerts", "right")):
        t.add_column(col, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for r in rows:
        t.add_row(r.code, r.affected_side, str(r.sessions), _span(r.ai_measured), _span(r.ai_truth),
                  f"{_yn(r.responder[0])}/{_yn(r.responder[1])}", f"{_yn(r.synkinesis[0])}/{_yn(r.synkinesis[1])}",
                  f"{r.faults[0]}/{r.faults[1]}", str(r.alerts))
    return t


def legend() -> str:
    return "\n".join(textwrap.wrap(LEGEND, WIDTH))


def _span(pair: tuple[float | None, float | None]) -> str:
    return f"{_fmt(pair[0])}->{_fmt(pair[1])}"


def _fmt(x: float | None) -> str:
    return "?" if x is None else f"{x:.2f}"


def _yn(x: bool | None) -> str:
    return "?" if x is None else ("yes" if x else "no")


# --- pictures and next steps ------------------------------------------------------


@dataclass(frozen=True)
class Outputs:
    """Files the demo wrote."""

    out_dir: Path
    reports: list[Path]
    dashboards_dir: Path
    dashboards_files: int


def write_outputs(s: Settings, codes: list[str], clinic_id: str, out_dir: Path) -> Outputs:
    """Each patient's progress report (PDF and PNG) and the built dashboards, under `out_dir`."""
    from dashboards.provisioning import build
    from dashboards.report import load, write

    out_dir.mkdir(parents=True, exist_ok=True)
    reports: list[Path] = []
    with psycopg.connect(s.db_dsn()) as conn:
        for code in codes:
            data = load(conn, code, DEMO_ACTOR)
            for suffix in (".pdf", ".png"):
                reports.append(write(data, out_dir / "reports" / f"{code}{suffix}"))
    grafana = out_dir / "grafana"
    files = build(grafana, s, [clinic_id], "/var/lib/grafana/dashboards/mimetic")
    return Outputs(out_dir, reports, grafana, len(list(files)))


def explore_commands(database: str, code: str, clinic_id: str, out_dir: Path) -> list[str]:
    """Shell commands that read the demo's data, each runnable as printed (long ones
    continue on a second line with a backslash)."""
    m = f"{mimetic_command()} --database {database}"
    out = repo_relative(out_dir)
    return [_fit(f"{m} report --patient {code} --out {out}/{code}.html"),
            _fit(f"{m} query session_muscle --out {out}/session_muscle.csv"),
            _fit(f"{m} dashboards check --clinic {clinic_id}"),
            _fit(f"{m} devices list")]


def _fit(cmd: str) -> str:
    """Break a command wider than the terminal over two lines, before its last option that
    leaves the first line short enough (a shell continues it after the backslash)."""
    if len(cmd) <= WIDTH - 2:
        return cmd
    cuts = [i for i in range(len(cmd)) if cmd.startswith(" --", i) and i > 0]
    fitting = [i for i in cuts if i + 4 <= WIDTH - 2] or cuts[:1]
    if not fitting:
        return cmd
    i = fitting[-1]
    return f"{cmd[:i]} \\\n    {cmd[i + 1:]}"


def closing_lines(database: str, s: Settings, outputs: Outputs, commands: list[str]) -> list[str]:
    """The demo's last lines: where the results are and how to explore them."""
    out = repo_relative(outputs.out_dir)
    codes = sorted({p.stem for p in outputs.reports})
    lines = [f"Left behind in {out}/:",
             f"  reports/CODE.pdf, .png  progress report of each patient ({len(codes)})",
             f"  grafana/                dashboards and provisioning ({outputs.dashboards_files} files)",
             f"and the data in database {database} on {s.pg_host}:{s.pg_port}.",
             "Explore it (every command takes --database, or set MIMETIC_PG_DATABASE):"]
    lines += ["  " + c.replace("\n", "\n  ") for c in commands]
    lines.append(f"Live view of a streaming session: {mimetic_command()} demo --watch")
    return lines

"""`mimetic demo`: the whole product on this machine, ending in a table a person can read.

Stack up, schema, topics; gateway, worker and sink as real processes; a small
simulated clinic streamed through the gateway (with device faults); then, per
patient, the symmetry the pipeline measured next to the simulator's truth.
Each run uses its own database (`mimetic_demo`, recreated) and topic prefix, so
runs never mix; the processes are stopped at the end unless `--keep-running`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mimetic.config import Settings

DEMO_DATABASE = "mimetic_demo"


@dataclass
class DemoOptions:
    patients: int = 4
    sessions: int = 4
    duration_s: float = 60.0
    seed: int = 7
    faults: float = 0.3
    keep_running: bool = False
    timeout_s: float = 900.0


class Proc:
    """A `mimetic` sub-command as a child process with its log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path):
        self.name = name
        self.log = log_dir / f"{name}.log"
        self.proc = subprocess.Popen([sys.executable, "-m", "mimetic.cli", *args], env=env,
                                     stdout=open(self.log, "wb"), stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def _drop_old_demo_topics(s: Settings, keep_prefix: str) -> None:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=s.kafka_bootstrap)
    try:
        old = [t for t in admin.list_topics() if t.startswith("demo-") and not t.startswith(keep_prefix)]
        if old:
            admin.delete_topics(old)
    except Exception:
        pass  # a leftover topic costs disk, not correctness
    finally:
        admin.close()


def run_demo(base: Settings, opt: DemoOptions, console: Console) -> int:
    from ingest.runner import gateway_healthy, register_simulation, run_simulation
    from ingest.simulator import Simulation
    from mimetic import stack
    from mimetic.db import fresh_database
    from mimetic.db.migrate import migrate
    from mimetic.kafka_admin import ensure_topics

    t_start = time.monotonic()
    for line in stack.up(base):
        console.print(line)
    run = time.strftime("%Y%m%d%H%M%S")
    s = base.model_copy(update={"pg_database": DEMO_DATABASE, "topic_prefix": f"demo-{run}",
                                "worker_id": f"demo-worker-{run}", "sink_group": f"demo-sink-{run}"})
    _drop_old_demo_topics(s, s.topic_prefix)
    fresh_database(s)
    migrate(s.db_dsn())
    ensure_topics(s)
    console.print(f"database {DEMO_DATABASE} (fresh, migrated), topics {s.topic_prefix}.*")

    log_dir = base.private_dir("run", "demo")
    env = {**os.environ, **s.as_env()}
    procs = [Proc("gateway", ["gateway"], env, log_dir), Proc("worker", ["worker"], env, log_dir),
             Proc("sink", ["sink"], env, log_dir)]
    ok = False
    try:
        deadline = time.monotonic() + 60
        while not asyncio.run(gateway_healthy(s)):
            _check_alive(procs)
            if time.monotonic() > deadline:
                raise RuntimeError(f"gateway did not come up; see {procs[0].log}")
            time.sleep(0.5)
        console.print(f"gateway, worker and sink running (logs in {log_dir})")

        sim = Simulation(patients=opt.patients, sessions=opt.sessions, duration_s=opt.duration_s, seed=opt.seed,
                         fault_prob=opt.faults, clinic_id="demo-clinic", device_prefix=f"demo{opt.seed}")
        secrets = register_simulation(sim, s)
        console.print(f"simulating {opt.patients} patients x {opt.sessions} sessions x {opt.duration_s:g} s "
                      f"(8 channels, 2 kHz, faults p={opt.faults}) through the gateway ...")
        result = asyncio.run(run_simulation(sim, s, via="gateway", realtime=False, secrets=secrets,
                                            transport="ws", max_rate=180.0))
        sent = sum(d["sent"] for d in result["devices"].values())
        console.print(f"sent {sent} records in {result['elapsed_s']:.1f} s; waiting for the pipeline ...")
        _wait_processed(s, sim, procs, opt.timeout_s, console)
        console.print(_table(s, sim), width=max(console.width, 132))
        console.print(f"demo finished in {time.monotonic() - t_start:.0f} s. The data stays in database "
                      f"{DEMO_DATABASE} on {s.pg_host}:{s.pg_port} (views patient_progress, patient_responder, "
                      f"active_alert, research.*).")
        ok = True
        return 0
    finally:
        if opt.keep_running and ok:
            console.print("still running (--keep-running): " + ", ".join(f"{p.name} pid {p.proc.pid}" for p in procs))
        else:
            for p in procs:
                p.stop()


def _check_alive(procs: list[Proc]) -> None:
    for p in procs:
        if not p.alive():
            tail = "\n".join(p.log.read_text(errors="replace").splitlines()[-15:])
            raise RuntimeError(f"{p.name} exited (code {p.proc.returncode}); its log {p.log} ends:\n{tail}")


def _wait_processed(s: Settings, sim, procs: list[Proc], timeout_s: float, console: Console) -> None:
    ids = [str(plan.session_id) for plans in sim.plans for plan in plans]
    deadline = time.monotonic() + timeout_s
    with Progress(TextColumn("sessions analysed"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("analysed", total=len(ids))
        while True:
            _check_alive(procs)
            with psycopg.connect(s.db_dsn(), autocommit=True) as conn:
                done = conn.execute(
                    "select count(distinct ss.session_id) from session_summary ss "
                    "join session_muscle_summary m using (session_id) "
                    "where ss.status <> 'open' and ss.session_id = any(%s::uuid[])", (ids,)).fetchone()[0]
            bar.update(task, completed=done)
            if done >= len(ids):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {done}/{len(ids)} sessions analysed after {timeout_s:.0f} s; "
                                   "see the worker and sink logs")
            time.sleep(1.0)


def _table(s: Settings, sim) -> Table:
    from ingest.simulator import FAULT_ALERT

    truth = sim.truth()
    with psycopg.connect(s.db_dsn(), autocommit=True) as conn:
        rows = conn.execute(
            """
            select ss.device_id, ss.session_id::text, ss.started_at, m.muscle, m.ai, m.synkinesis_flag
            from session_summary ss join session_muscle_summary m using (session_id)
            order by ss.device_id, ss.started_at
            """).fetchall()
        alerts = conn.execute("select device_id, alert_type from alert").fetchall()
    measured: dict[str, dict[str, dict[str, Any]]] = defaultdict(lambda: defaultdict(dict))
    for device, session, _t, muscle, ai, syn in rows:
        measured[device][session][muscle] = (ai, syn)
    raised: dict[str, Counter] = defaultdict(Counter)
    for device, kind in alerts:
        raised[device][kind] += 1

    t = Table(title="mimetic demo: what the pipeline measured (m) against the simulator's truth (t)",
              show_lines=False)
    for col, kw in (("patient", {}), ("aff.", {}), ("sess.", {"justify": "right"}),
                    ("|AI| first->last m", {}), ("t", {}), ("responder m/t", {}), ("synkinesis m/t", {}),
                    ("faults -> alerts", {}), ("alerts", {"justify": "right"})):
        t.add_column(col, **kw)
    for p in truth["patients"]:
        dev = p["device_id"]
        sessions = p["sessions"]
        first, last = sessions[0], sessions[-1]

        def mean_abs(sess: dict, source: str) -> float | None:
            if source == "truth":
                vals = [abs(m["ai"]) for m in sess["muscles"].values()]
            else:
                vals = [abs(v[0]) for v in measured[dev].get(sess["session_id"], {}).values() if v[0] is not None]
            return sum(vals) / len(vals) if vals else None

        mf, ml = mean_abs(first, "m"), mean_abs(last, "m")
        tf, tl = mean_abs(first, "truth"), mean_abs(last, "truth")
        responder = None if mf is None or ml is None or len(sessions) < 2 else (mf - ml) >= 0.10
        syn_measured = any(v[1] for sess in measured[dev].values() for v in sess.values())
        expected = {FAULT_ALERT[f["type"]] for sess in sessions for f in sess["faults"] if f["type"] in FAULT_ALERT}
        found = expected & set(raised[dev])
        t.add_row(p["code"], p["affected_side"], str(len(measured[dev])), f"{_fmt(mf)}->{_fmt(ml)}",
                  f"{_fmt(tf)}->{_fmt(tl)}", f"{_yn(responder)}/{_yn(p['responder'])}",
                  f"{_yn(syn_measured)}/{_yn(p['synkinesis'])}", f"{len(found)}/{len(expected)} kinds raised",
                  str(sum(raised[dev].values())))
    return t


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _yn(x: bool | None) -> str:
    return "?" if x is None else ("yes" if x else "no")

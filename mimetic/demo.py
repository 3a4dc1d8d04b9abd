"""`mimetic demo`: the whole product on this machine, ending in results a person can read.

Stack up, schema, topics; gateway, worker and sink as real processes; a small
simulated clinic streamed through the gateway (with device faults); then, per
patient, the symmetry the pipeline measured next to the simulator's truth, each
patient's progress report and the built dashboards in one output folder, and the
commands that explore the same data. `--watch` streams in real time and shows the
live view of one patient meanwhile.

Each run recreates its database (`mimetic_demo`, or the global `--database`; one the
demo did not make is refused) and uses its own topic prefix, so runs never mix; the
processes are stopped at the end unless `--keep-running`.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from mimetic.config import REPO_ROOT, Settings
from mimetic.where import DEMO_COMMENT_PREFIX, DEMO_DATABASE

DEMO_CLINIC = "demo-clinic"
OLD_TOPICS_AFTER_S = 3600.0  # another database's demo topics older than this are dropped


@dataclass
class DemoOptions:
    patients: int = 4
    sessions: int = 4
    duration_s: float = 60.0
    seed: int = 7
    faults: float = 0.3
    keep_running: bool = False
    timeout_s: float = 900.0
    database: str = DEMO_DATABASE
    out_dir: Path = field(default_factory=lambda: REPO_ROOT / "out" / "demo")
    watch: bool = False


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


def topic_prefix(database: str, run: str) -> str:
    """Topics of one demo run: named after its database, so two databases' demos never meet."""
    return f"demo-{database.replace('_', '-')}-{run}"


def _drop_old_demo_topics(s: Settings, database: str, keep_prefix: str) -> None:
    """Earlier runs' topics of this database, and other demos' topics older than an hour."""
    from kafka import KafkaAdminClient

    from mimetic.kafka_security import client_kwargs

    mine = topic_prefix(database, "")
    stamp = re.compile(r"^demo-(?:.*-)?(\d{14})[.-]")
    now = time.time()
    admin = KafkaAdminClient(bootstrap_servers=s.bootstrap_servers(), **client_kwargs(s))
    try:
        old = []
        for t in admin.list_topics():
            if not t.startswith("demo-") or t.startswith(keep_prefix):
                continue
            m = stamp.match(t)
            if (t.startswith(mine) and t[len(mine):len(mine) + 14].isdigit()) or (m and now - time.mktime(time.strptime(m.group(1), "%Y%m%d%H%M%S"))
                                      > OLD_TOPICS_AFTER_S):
                old.append(t)
        if old:
            admin.delete_topics(old)
    except Exception:
        pass  # a leftover topic costs disk, not correctness
    finally:
        admin.close()


def prepare_database(s: Settings, opt: DemoOptions) -> None:
    """Recreate the demo's database, refusing one that exists and was not made by a demo."""
    from mimetic.db import fresh_database

    admin = s.model_copy(update={"pg_database": "postgres"})
    with psycopg.connect(admin.db_dsn(), autocommit=True) as conn:
        row = conn.execute("select shobj_description(oid, 'pg_database') from pg_database where datname = %s",
                           (s.pg_database,)).fetchone()
    if row is not None and s.pg_database != DEMO_DATABASE and not (row[0] or "").startswith(DEMO_COMMENT_PREFIX) \
            and _has_tables(s):
        raise RuntimeError(f"database {s.pg_database} exists and was not made by the demo, which recreates "
                           f"its database: choose another --database (default {DEMO_DATABASE})")
    fresh_database(s)
    comment = (f"{DEMO_COMMENT_PREFIX} of {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
               f"{opt.patients} patients x {opt.sessions} sessions")
    with psycopg.connect(s.db_dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("comment on database {} is {}").format(sql.Identifier(s.pg_database),
                                                                    sql.Literal(comment)))


def _has_tables(s: Settings) -> bool:
    with psycopg.connect(s.db_dsn(), autocommit=True) as conn:
        return conn.execute("select exists (select 1 from pg_tables where schemaname = 'public')").fetchone()[0]


def run_demo(base: Settings, opt: DemoOptions, console: Console) -> int:
    from ingest.runner import gateway_healthy, register_simulation
    from ingest.simulator import Simulation
    from ingest.wire import now_us
    from mimetic import stack
    from mimetic.db.migrate import migrate
    from mimetic.demo_results import closing_lines, explore_commands, legend, patient_rows, results_table, \
        write_outputs
    from mimetic.kafka_admin import ensure_topics

    t_start = time.monotonic()
    for line in stack.up(base.model_copy(update={"pg_database": "postgres"})):  # the demo makes its own
        console.print(line)
    run = time.strftime("%Y%m%d%H%M%S")
    prefix = topic_prefix(opt.database, run)  # the worker's changelog topics start with it too
    s = base.model_copy(update={"pg_database": opt.database, "topic_prefix": prefix,
                                "worker_id": f"{prefix}-worker", "sink_group": f"{prefix}-sink"})
    _drop_old_demo_topics(s, opt.database, s.topic_prefix)
    prepare_database(s, opt)
    migrate(s.db_dsn())
    ensure_topics(s)
    console.print(f"database {opt.database} (fresh, migrated), topics {s.topic_prefix}.*")

    log_dir = base.private_dir("run", "demo", opt.database)
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

        live = {"start_us": now_us(), "session_gap_s": opt.duration_s + 2.0} if opt.watch else {}
        sim = Simulation(patients=opt.patients, sessions=opt.sessions, duration_s=opt.duration_s, seed=opt.seed,
                         fault_prob=opt.faults, clinic_id=DEMO_CLINIC, device_prefix=f"demo{opt.seed}", **live)
        secrets = register_simulation(sim, s)
        pace = "in real time" if opt.watch else "as fast as the gateway takes it"
        console.print(f"simulating {opt.patients} patients x {opt.sessions} sessions x {opt.duration_s:g} s "
                      f"(8 channels, 2 kHz, faults p={opt.faults}) through the gateway, {pace} ...")
        result = _stream(sim, s, secrets, opt, procs, console)
        sent = sum(d["sent"] for d in result["devices"].values())
        console.print(f"sent {sent} records in {result['elapsed_s']:.1f} s; waiting for the pipeline ...")
        _wait_processed(s, sim, procs, opt.timeout_s, console)
        truth = sim.truth()
        console.print(results_table(patient_rows(s, truth)))
        console.print(legend(), highlight=False)
        _print_alerts(s, sim, truth, console)
        console.print("writing progress reports and dashboards ...")
        codes = [p["code"] for p in truth["patients"]]
        outputs = write_outputs(s, codes, DEMO_CLINIC, opt.out_dir)
        console.print(f"demo finished in {time.monotonic() - t_start:.0f} s.")
        commands = explore_commands(opt.database, codes[0], DEMO_CLINIC, opt.out_dir)
        for line in closing_lines(opt.database, s, outputs, commands):
            console.print(line, highlight=False, markup=False, soft_wrap=True)
        ok = True
        return 0
    finally:
        if opt.keep_running and ok:
            console.print("still running (--keep-running): " + ", ".join(f"{p.name} pid {p.proc.pid}" for p in procs))
        else:
            for p in procs:
                p.stop()


def _stream(sim, s: Settings, secrets: dict[str, str], opt: DemoOptions, procs: list[Proc],
            console: Console) -> dict[str, Any]:
    """Stream the clinic through the gateway; with `--watch`, show the first patient live meanwhile."""
    from ingest.runner import run_simulation

    def simulate() -> dict[str, Any]:
        return asyncio.run(run_simulation(sim, s, via="gateway", realtime=opt.watch, secrets=secrets,
                                          transport="ws", max_rate=0.0 if opt.watch else 180.0))

    if not opt.watch:
        return simulate()
    from dashboards.watch.stream import WatchTarget, watch

    box: dict[str, Any] = {}
    done = threading.Event()

    def target() -> None:
        try:
            box["result"] = simulate()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=target, name="demo-simulation", daemon=True).start()
    watch(s, WatchTarget(device_id=sim.device_ids[0]), console, stop=done,
          check=lambda: _check_alive(procs))
    console.line()
    done.wait()
    if "error" in box:
        raise box["error"]
    return box["result"]


def _print_alerts(s: Settings, sim, truth: dict[str, Any], console: Console) -> None:
    """Alerts raised against injected faults, per type, and how many nothing explains."""
    import textwrap

    from mimetic.demo_alerts import LEGEND, alerts_table, kind_rows, stored_episodes, summary_line

    rows = kind_rows(stored_episodes(s, list(sim.device_ids)), truth, s.worker_silent_after_s)
    console.print(alerts_table(rows))
    console.print("\n".join(textwrap.wrap(LEGEND, 80)), highlight=False)
    console.print(summary_line(rows), highlight=False)


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



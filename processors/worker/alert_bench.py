"""`mimetic bench alerts`: alert quality against the simulator's truth.

Simulated sessions go straight through `DeviceProcessor` (no Kafka: fast), in
each device's send order, each record arriving at its device time (a frame when
its last sample is taken), with the worker's liveness tick every
`MIMETIC_WORKER_TICK_INTERVAL_S` of device time while a session is open (the
worker's timer sends ticks only then). Each device has two sessions an hour
apart, so a quiet device between sessions is exercised too.

Sessions are planned per (mains 50/60 Hz, injected fault kind or none); half the
devices state their mains in session_start, the others leave it to detection.
For every alert type the report gives:

* recall: injected faults (`ingest.simulator.FAULT_ALERT`) whose alert was raised
  (on the fault's channel, for channel faults);
* raise latency: device time from the condition starting (the fault's start; for
  `impedance_drift` the first reading above the range, as the drift is slow; for
  `packet_loss` the arrival time of the first frame lost) to the raised record
  being emitted; clear latency: from the fault's end (or the
  session's end, for faults lasting to it) to the cleared record;
* false alerts: raised records no injected fault explains, per 100 session-hours.
  What explains an alert is the rule of `ingest.alert_truth` (a lifted electrode's
  hum and rails are side effects, not false), within the fault's time span.

Latencies are emission times, not the record's `raised_at` (which is dated back to
when the condition started), because they say when someone can first be told.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import resource
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ingest import sim_faults, wire
from ingest.alert_truth import BY_DEFINITION, causes
from ingest.simulator import FAULT_ALERT, FAULT_TYPES, Fault, Simulation
from processors import records as R
from processors.alerting import ALERT_TYPE_OF, RULES
from processors.worker.device import DeviceProcessor, WorkerParams

#: seconds an alert may be emitted after its fault ended and still belong to it
MATCH_SLACK_S = 15.0
SESSION_GAP_S = 3600.0


@dataclass(frozen=True)
class BenchShape:
    """How many sessions of what: per mains frequency, `sessions` with each fault kind (frames of
    `frame_ms`) and `fault_free_sessions` without (of `fault_free_s`, frames of `fault_free_frame_ms`:
    the false-alert rate needs hours, and the cost is per frame)."""

    sessions: int = 4
    duration_s: float = 120.0
    fault_free_sessions: int = 4
    fault_free_s: float = 600.0
    channels: int = 2
    fs_hz: int = 2000
    frame_ms: int = 250
    fault_free_frame_ms: int = 1000
    seed: int = 0
    faults: tuple[str, ...] = FAULT_TYPES
    mains: tuple[float, ...] = (50.0, 60.0)


@dataclass
class Emitted:
    """An alert record and the device time it was emitted at."""

    rec: R.AlertRecord
    at_s: float


@dataclass
class SessionRun:
    """What one simulated session injected and what the processor said about it."""

    device_id: str
    mains_hz: float
    stated: bool
    start_s: float
    end_s: float
    faults: list[dict]  # type, start_s/end_s (device time), channel, onset_s
    alerts: list[Emitted] = field(default_factory=list)


def alert_type(kind: str) -> str:
    return ALERT_TYPE_OF.get(kind, kind)


def _arrival_s(rec) -> float:
    item = rec.item
    if rec.kind == wire.KIND_FRAME:
        return (item.t_us + item.duration_us) / 1e6
    return item.t_us / 1e6


def run_device(sim: Simulation, index: int, params: WorkerParams, tick_s: float) -> list[Emitted]:
    """One device's records through a DeviceProcessor, with ticks; every alert with its emission time."""
    dp = DeviceProcessor(sim.device_ids[index], params)
    out: list[Emitted] = []
    next_tick: float | None = None

    def collect(recs: Iterable, at_s: float) -> None:
        out.extend(Emitted(r, at_s) for r in recs if isinstance(r, R.AlertRecord))

    for rec in sim.device_records(index):
        now = _arrival_s(rec)
        while next_tick is not None and next_tick <= now:
            if dp.session is None and dp.closing is None:
                next_tick = None  # the worker's timer ticks only devices with an open session
                break
            collect(dp.on_tick(next_tick, dp.last_arrival_s), next_tick)
            next_tick += tick_s
        if rec.kind == wire.KIND_FRAME:
            recs, _late = dp.on_frame(rec.item, wire.encode_frame(rec.item))
            dp.last_arrival_s = now
        elif rec.kind == wire.KIND_TELEMETRY:
            recs = dp.on_telemetry(rec.item)
        else:
            recs = dp.on_event(rec.item, int(now * 1e6))
        collect(recs, now)
        if next_tick is None and (dp.session is not None or dp.closing is not None):
            next_tick = math.floor(now / tick_s) * tick_s + tick_s
    # the device stops: ticks until its session is closed (silence, then the timeout)
    t = next_tick
    while t is not None and (dp.session is not None or dp.closing is not None) and t < now + 2 * params.session_timeout_s:
        collect(dp.on_tick(t, dp.last_arrival_s), t)
        t += tick_s
    return out


def simulate(shape: BenchShape, params: WorkerParams, tick_s: float,
             progress: Callable[[int, int], None] = lambda i, n: None, workers: int = 1) -> list[SessionRun]:
    """Every planned session through the processor: fault-free ones, then those with a fault
    (devices in `workers` processes)."""
    free = [(m, None) for m in shape.mains for _ in range(shape.fault_free_sessions)]
    faulty = _stimulated(
        [(m, k) for m in shape.mains for k in shape.faults for _ in range(shape.sessions)])
    runs = _simulate(shape, free, shape.fault_free_s, shape.fault_free_frame_ms, "f", params, tick_s, progress,
                     workers)
    return runs + _simulate(shape, faulty, shape.duration_s, shape.frame_ms, "x", params, tick_s, progress,
                            workers)


def _stimulated(plan: list[tuple[float, str | None]]) -> list[tuple[float, str | None]]:
    """Over-current needs stimulation: swap it with its device's other session where the simulator
    would make it a biofeedback one (session k of device i is microcurrent when i + k is even; an
    over-current pair keeps one biofeedback session, whose fault is not injected)."""
    out = list(plan)
    for j, (_m, kind) in enumerate(out):
        partner = j ^ 1
        if kind == "over_current" and (j // 2 + j % 2) % 2 == 1 and partner < len(out) \
                and out[partner][1] != "over_current":
            out[j], out[partner] = out[partner], out[j]
    return out


def _simulate(shape: BenchShape, plan: list[tuple[float, str | None]], duration_s: float, frame_ms: int,
              tag: str, params: WorkerParams, tick_s: float, progress: Callable[[int, int], None],
              workers: int = 1) -> list[SessionRun]:
    """Sessions of `plan`, two per device (an hour apart); devices are independent, so with
    `workers` > 1 they run in that many processes (the same results, in the same order)."""
    if not plan:
        return []
    pairs = [plan[i:i + 2] for i in range(0, len(plan), 2)]
    job = _DeviceJob(shape, pairs, duration_s, frame_ms, tag, params, tick_s)
    runs: list[SessionRun] = []
    if workers <= 1 or len(pairs) < 2:
        for i in range(len(pairs)):
            runs += job(i)
            progress(i + 1, len(pairs))
        return runs
    ctx = multiprocessing.get_context("fork")  # no re-import per worker
    with ProcessPoolExecutor(max_workers=min(workers, len(pairs)), mp_context=ctx) as pool:
        for i, dev_runs in enumerate(pool.map(job, range(len(pairs)))):
            runs += dev_runs
            progress(i + 1, len(pairs))
    return runs


@dataclass(frozen=True)
class _DeviceJob:
    """One device's planned sessions through a processor (a picklable callable for a process pool)."""

    shape: BenchShape
    pairs: list[list[tuple[float, str | None]]]
    duration_s: float
    frame_ms: int
    tag: str
    params: WorkerParams
    tick_s: float

    def simulation(self) -> Simulation:
        s = self.shape
        return Simulation(patients=len(self.pairs), sessions=2, duration_s=self.duration_s, fs_hz=s.fs_hz,
                          channels=s.channels, seed=s.seed, frame_ms=self.frame_ms, fault_prob=1.0,
                          session_gap_s=SESSION_GAP_S, device_prefix=f"ab{self.tag}{s.seed}",
                          start_us=1_780_000_000_000_000)

    def __call__(self, i: int) -> list[SessionRun]:
        sim, pair, frame_ms, params = self.simulation(), self.pairs[i], self.frame_ms, self.params
        p = sim.patients[i]
        p.mains_hz = pair[0][0]
        p.states_mains = i % 2 == 0
        dev_runs = []
        for k, (mains, kind) in enumerate(pair + [pair[-1]] * (2 - len(pair))):
            sp = sim.plans[i][k]
            sp.faults = [f for f in sp.faults if f.type == kind]
            if kind in sim_faults.SIGNAL_FAULT_TYPES and not sp.faults:  # placed clear of the others: alone now
                rng = np.random.default_rng([self.shape.seed, i, k, 8])
                sp.faults = [f for f in sim_faults.plan(rng, sp.duration_s, self.shape.channels, 1.0, Fault)
                             if f.type == kind]
            if kind is None or kind != "over_current":
                sp.discomfort, sp.skin_reaction = min(sp.discomfort, 3), "none"
            sp.stated_mains_hz = int(p.mains_hz) if p.states_mains else None
            t0 = sp.t0_us / 1e6
            dev_runs.append(SessionRun(sim.device_ids[i], p.mains_hz, p.states_mains, t0, t0 + sp.duration_s, [
                {"type": f.type, "start_s": t0 + f.start_s, "end_s": t0 + f.end_s, "channel": f.channel,
                 "onset_s": t0 + f.start_s, "to_end": f.end_s >= sp.duration_s - 1e-6} for f in sp.faults]))
        emitted = run_device(sim, i, params, self.tick_s)
        for run in dev_runs:
            run.alerts = [e for e in emitted if run.start_s - 1.0 <= e.rec.raised_at.timestamp() <= run.end_s + 1.0]
            k = 0 if run is dev_runs[0] else 1
            for f in run.faults:
                if f["type"] == "impedance_drift":
                    f["onset_s"] = _impedance_onset(sim, i, run, f, params.impedance_max_kohm)
                elif f["type"] == "packet_loss":  # the first frame lost, when it would have arrived
                    sent = sim._sent[(i, k)]
                    if sent["dropped_seqs"]:
                        lost = min(sent["dropped_seqs"]) - sent["first_seq"] + 1
                        f["onset_s"] = run.start_s + lost * frame_ms / 1000.0
        return dev_runs[:len(pair)]  # an odd count: the last device's second session is not scored


def _impedance_onset(sim: Simulation, i: int, run: SessionRun, f: dict, max_kohm: float) -> float:
    """First device time the drifting channel's impedance reading is above the range."""
    k = 0 if abs(sim.plans[i][0].t0_us / 1e6 - run.start_s) < 1 else 1
    from ingest.simulator import SessionSynth
    synth = SessionSynth(sim.patients[i], sim.plans[i][k], np.random.default_rng(0), sim.frame_ms)
    for t in np.arange(0.0, run.end_s - run.start_s, 1.0):
        if synth.impedance(float(t))[f["channel"]] > max_kohm:
            return run.start_s + float(t)
    return run.end_s


def _explains(f: dict, e: Emitted, own: bool) -> bool:
    """The rule of `ingest.alert_truth` (type and channel), and inside the fault's time span."""
    if not causes(f, e.rec.alert_type, e.rec.channel, own):
        return False
    return f["start_s"] - 1.0 <= e.rec.raised_at.timestamp() and e.at_s <= f["end_s"] + MATCH_SLACK_S


def _pct(xs: list[float]) -> dict[str, float | None]:
    if not xs:
        return {"n": 0, "p50": None, "p95": None, "max": None}
    a = np.asarray(xs)
    return {"n": len(xs), "p50": round(float(np.percentile(a, 50)), 2),
            "p95": round(float(np.percentile(a, 95)), 2), "max": round(float(a.max()), 2)}


def score(runs: list[SessionRun]) -> dict:
    """The confusion table per alert type, from sessions run."""
    hours = sum(r.end_s - r.start_s for r in runs) / 3600.0
    types = sorted({alert_type(k) for k in RULES})
    per: dict[str, dict] = {t: {"injected": 0, "raised": 0, "cleared": 0, "false": 0, "secondary": 0,
                                "raise_s": [], "clear_s": [], "false_examples": []} for t in types}
    for run in runs:
        raised = [e for e in run.alerts if e.rec.state == "raised"]
        cleared = {e.rec.alert_id: e for e in run.alerts if e.rec.state == "cleared"}
        used: set[str] = set()
        for f in run.faults:
            want = FAULT_ALERT.get(f["type"])
            if want is None:
                continue
            row = per[want]
            row["injected"] += 1
            hits = [e for e in raised if _explains(f, e, True)]
            if not hits:
                continue
            first = min(hits, key=lambda e: e.at_s)
            row["raised"] += 1
            row["raise_s"].append(max(0.0, first.at_s - f["onset_s"]))
            used.update(e.rec.alert_id for e in hits)
            last = max(hits, key=lambda e: e.at_s)
            c = cleared.get(last.rec.alert_id)
            if c is not None:
                row["cleared"] += 1
                row["clear_s"].append(max(0.0, c.at_s - (run.end_s if f["to_end"] else f["end_s"])))
        for e in raised:
            if e.rec.alert_id in used:
                continue
            t = e.rec.alert_type
            if t in BY_DEFINITION:
                continue  # a patient's report, a counter restart: events, not faults to score
            if any(_explains(f, e, False) for f in run.faults):
                per[t]["secondary"] += 1
                continue
            per[t]["false"] += 1
            if len(per[t]["false_examples"]) < 5:
                per[t]["false_examples"].append({"device": run.device_id, "mains_hz": run.mains_hz,
                                                 "stated": run.stated, "channel": e.rec.channel,
                                                 "at_s_into_session": round(e.at_s - run.start_s, 2),
                                                 "value": e.rec.value,
                                                 "faults": [f["type"] for f in run.faults]})
    table = {}
    for t, row in per.items():
        rule = next(r for r in RULES.values() if alert_type(r.kind) == t)
        table[t] = {"injected": row["injected"], "raised": row["raised"], "cleared": row["cleared"],
                    "recall": round(row["raised"] / row["injected"], 3) if row["injected"] else None,
                    "false": row["false"], "false_per_100h": round(100 * row["false"] / hours, 2) if hours else None,
                    "secondary": row["secondary"],
                    "raise_latency_s": _pct(row["raise_s"]), "clear_latency_s": _pct(row["clear_s"]),
                    "documented_raise_within_s": rule.raise_within_s,
                    "documented_clear_within_s": rule.clear_within_s,
                    "false_examples": row["false_examples"]}
    return {"session_hours": round(hours, 3), "sessions": len(runs), "alerts": table}


def markdown(report: dict) -> str:
    """The confusion table, one row per alert type (fits 80 columns without the header notes)."""
    lines = [f"{report['sessions']} sessions, {report['session_hours']:.1f} session-hours",
             "", "| alert | inj | raised | clr | false/100h | raise p50/p95/max s | clear p50/p95/max s |",
             "|---|---|---|---|---|---|---|"]

    def lat(d: dict) -> str:
        return "-" if not d["n"] else f"{d['p50']:g}/{d['p95']:g}/{d['max']:g}"

    for t, r in report["alerts"].items():
        lines.append(f"| {t} | {r['injected']} | {r['raised']} | {r['cleared']} | {r['false_per_100h']:g} | "
                     f"{lat(r['raise_latency_s'])} | {lat(r['clear_latency_s'])} |")
    return "\n".join(lines)


def cpu_s() -> float:
    """CPU seconds of this process and its finished children (the bench's worker processes)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def run_alert_bench(shape: BenchShape, params: WorkerParams, tick_s: float, out: Path | None,
                    log: Callable[[str], None] = lambda s: None, workers: int = 1) -> dict:
    cpu0, wall0 = cpu_s(), time.monotonic()
    runs = simulate(shape, params, tick_s, lambda i, n: log(f"device {i}/{n}") if i % 10 == 0 else None,
                    workers)
    report = {"shape": asdict(shape), "tick_s": tick_s, **score(runs),
              "cpu_s": round(cpu_s() - cpu0, 1), "wall_s": round(time.monotonic() - wall0, 1),
              "workers": workers}
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    return report

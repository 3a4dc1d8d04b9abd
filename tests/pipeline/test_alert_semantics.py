"""What an alert means (processors.alerting's table) and the session rules it promises, checked on
`DeviceProcessor` directly: no alert between sessions, none back-dated or attached to another
session, each cleared by its session's end at the latest; mains per device."""

from __future__ import annotations

import numpy as np
import pytest

import processors.alerting as alerting
from ingest import wire
from ingest.simulator import Simulation
from mimetic.config import REPO_ROOT
from mimetic.domain import MUSCLES
from processors import records as R
from processors.alerting import ALERT_TYPE_OF, RULES, semantics_table
from processors.worker.alert_bench import run_device
from processors.worker.device import DeviceProcessor, WorkerParams

START_US = 1_780_000_000_000_000


def test_the_semantics_table_is_in_the_readme_and_the_module_docstring() -> None:
    table = semantics_table()
    assert table in (REPO_ROOT / "README.md").read_text(), "README: paste `semantics_table()` (see its section)"
    assert table in (alerting.__doc__ or ""), "processors/alerting.py docstring: paste `semantics_table()`"
    assert {ALERT_TYPE_OF.get(k, k) for k in RULES} <= set(R.ALERT_TYPES)
    for rule in RULES.values():
        assert rule.raises and rule.clears, rule.kind


def _run(sim: Simulation, i: int = 0) -> list:
    return [e.rec for e in run_device(sim, i, WorkerParams(), 2.0)]


def _sessions(sim: Simulation, i: int = 0) -> list[tuple]:
    return [(p.session_id, p.t0_us / 1e6, p.t0_us / 1e6 + p.duration_s) for p in sim.plans[i]]


def test_a_device_between_sessions_raises_nothing_and_alerts_stay_in_their_session() -> None:
    sim = Simulation(patients=1, sessions=3, duration_s=30, channels=2, seed=7, fault_prob=0.0,
                     session_gap_s=3600.0, start_us=START_US)
    sim.plans[0][1].faults = []
    recs = _run(sim)
    assert not [r for r in recs if r.alert_type == "device_silent"]
    spans = _sessions(sim)
    by_id = {}
    for r in recs:
        by_id.setdefault(r.alert_id, []).append(r)
    for aid, rs in by_id.items():
        raised = [r for r in rs if r.state == "raised"]
        cleared = [r for r in rs if r.state == "cleared"]
        assert len(raised) == 1 and len(cleared) == 1, (aid, [r.state for r in rs])
        sid, t0, t1 = next(s for s in spans if s[0] == raised[0].session_id)
        for r in rs:  # dated inside the session it is attached to
            assert r.session_id == sid and t0 <= r.time.timestamp() <= t1 + 1.0, r


def test_silence_inside_a_session_is_raised_there_and_cleared_by_the_next_frame() -> None:
    sim = Simulation(patients=1, sessions=2, duration_s=60, channels=2, seed=8, fault_prob=1.0,
                     session_gap_s=3600.0, start_us=START_US)
    for p in sim.plans[0]:
        p.faults = [f for f in p.faults if f.type == "silent_device"]
    sim.plans[0][1].faults = []
    (fault,) = sim.plans[0][0].faults
    sid, t0, _t1 = _sessions(sim)[0]
    silent = [r for r in _run(sim) if r.alert_type == "device_silent"]
    assert [r.state for r in silent] == ["raised", "cleared"]
    assert all(r.session_id == sid for r in silent)
    # dated when the silence had lasted silent_after_s, cleared when the device spoke again
    assert silent[0].time.timestamp() == pytest.approx(t0 + fault.start_s + 5.0, abs=0.1)
    assert silent[1].time.timestamp() == pytest.approx(t0 + fault.end_s, abs=0.1)


def test_a_tick_between_session_start_and_its_first_frame_is_not_silence() -> None:
    sim = Simulation(patients=1, sessions=2, duration_s=20, channels=2, seed=9, fault_prob=0.0,
                     session_gap_s=3600.0, start_us=START_US)
    dp = DeviceProcessor(sim.device_ids[0], WorkerParams())
    recs = list(sim.device_records(0))
    second = [r for r in recs if r.session_index == 1]
    for r in recs:
        if r is second[0]:
            break
        if r.kind == wire.KIND_FRAME:
            dp.on_frame(r.item, wire.encode_frame(r.item))
            dp.last_arrival_s = (r.item.t_us + r.item.duration_us) / 1e6
        elif r.kind == wire.KIND_TELEMETRY:
            dp.on_telemetry(r.item)
        else:
            dp.on_event(r.item)
    start = second[0].item
    assert isinstance(start, wire.SessionStart)
    dp.on_event(start, start.t_us)
    out = dp.on_tick(start.t_us / 1e6 + 3.0, dp.last_arrival_s)  # the device's last frame: an hour ago
    assert not [r for r in out if isinstance(r, R.AlertRecord)]
    out = dp.on_tick(start.t_us / 1e6 + 7.0, dp.last_arrival_s)  # but 7 s without a frame is silence
    (alert,) = [r for r in out if isinstance(r, R.AlertRecord)]
    assert alert.alert_type == "device_silent" and alert.session_id == start.session_id
    assert alert.time.timestamp() == pytest.approx(start.t_us / 1e6 + 5.0)


# --- mains per device ----------------------------------------------------------------------------


def _twin(mains_hz: float, stated: bool) -> tuple[list[R.Record], Simulation]:
    sim = Simulation(patients=1, sessions=1, duration_s=40, channels=4, seed=11, fault_prob=0.0,
                     start_us=START_US)
    sim.patients[0].mains_hz, sim.patients[0].states_mains = mains_hz, stated
    sim.plans[0][0].stated_mains_hz = int(mains_hz) if stated else None
    dp = DeviceProcessor(sim.device_ids[0], WorkerParams(mains_hz=50.0))
    out: list[R.Record] = []
    for r in sim.device_records(0):
        if r.kind == wire.KIND_FRAME:
            out += dp.on_frame(r.item, wire.encode_frame(r.item))[0]
        elif r.kind == wire.KIND_TELEMETRY:
            out += dp.on_telemetry(r.item)
        else:
            out += dp.on_event(r.item)
    assert dp.mains_hz == mains_hz  # stated, or detected in the first 2 s
    return out, sim


def _ai(out: list[R.Record], sim: Simulation) -> dict[str, float]:
    """Per muscle, (L - R) / (L + R) of the mean envelope inside its own task's windows."""
    cmap = {(c["muscle"], c["side"]): c["channel"] for c in sim.channel_map}
    wins = [(w.task, w.time.timestamp(), w.time_end.timestamp()) for w in out if isinstance(w, R.TaskWindowRecord)]
    env = [e for e in out if isinstance(e, R.EnvelopeFrame)]
    t = np.concatenate([e.time.timestamp() + np.arange(e.array.shape[1]) / e.fs_hz for e in env])
    a = np.concatenate([e.array for e in env], axis=1)
    res = {}
    for muscle in {m for m, _s in cmap}:
        inside = np.zeros(t.size, dtype=bool)
        for task, t0, t1 in wins:
            if task == MUSCLES[muscle]:
                inside |= (t >= t0) & (t < t1)
        left, right = a[cmap[(muscle, "L")], inside].mean(), a[cmap[(muscle, "R")], inside].mean()
        res[muscle] = (left - right) / (left + right)
    return res


@pytest.mark.parametrize("stated", [True, False], ids=["stated", "detected"])
def test_a_60_hz_session_is_notched_at_60_and_matches_its_50_hz_twin(stated: bool) -> None:
    out60, sim60 = _twin(60.0, stated)
    out50, sim50 = _twin(50.0, stated)
    assert not [r for r in out60 + out50 if isinstance(r, R.AlertRecord) and r.alert_type == "mains_noise"]
    ai60, ai50 = _ai(out60, sim60), _ai(out50, sim50)
    assert ai60.keys() == ai50.keys() and len(ai60) == 2
    for muscle in ai60:
        assert ai60[muscle] == pytest.approx(ai50[muscle], abs=0.02), muscle

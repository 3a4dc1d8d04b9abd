"""The whole pipeline on real services: simulated devices -> Kafka -> worker (Faust, subprocess)
-> sink (subprocess) -> TimescaleDB, scored against the simulator's ground truth."""

from __future__ import annotations

import asyncio

import pytest

from ingest import wire
from ingest.runner import register_simulation, run_simulation
from ingest.simulator import FAULT_ALERT, Simulation
from mimetic.config import Settings

from .conftest import query, wait_for

pytestmark = [pytest.mark.stack, pytest.mark.slow]



def _session_ids(sim: Simulation) -> list[str]:
    return [str(plan.session_id) for plans in sim.plans for plan in plans]


def _analysed(s: Settings, sim: Simulation) -> bool:
    ids = _session_ids(sim)
    rows = query(s, "select count(distinct ss.session_id) from session_summary ss "
                    "join session_muscle_summary m using (session_id) "
                    "where ss.status = 'ended' and ss.session_id = any(%s::uuid[])", (ids,))
    return rows[0][0] == len(ids)


def test_asymmetry_and_synkinesis_match_the_truth(pipeline_settings: Settings, services) -> None:
    s = pipeline_settings
    sim = Simulation(patients=3, sessions=2, duration_s=40, seed=31, fault_prob=0.0, device_prefix="e2e-acc")
    register_simulation(sim, s, kdf_n=2**10)  # patients with their affected side, devices with their map
    worker, sink = services("worker"), services("sink")
    asyncio.run(run_simulation(sim, s, via="kafka"))
    wait_for(lambda: _analysed(s, sim), 240, "every session summarised and analysed", [worker, sink])

    # every frame counted for its session, although session events and frames travel unordered
    for i, device in enumerate(sim.device_ids):
        want: dict[str, int] = {}
        for rec in sim.device_records(i):
            if rec.kind == wire.KIND_FRAME:
                want[str(rec.item.session_id)] = want.get(str(rec.item.session_id), 0) + 1
        got = dict(query(s, "select session_id::text, frames from session_summary where device_id = %s "
                            "and status = 'ended'", (device,)))
        assert got == want, device

    truth = sim.truth()
    checked = 0
    for patient in truth["patients"]:
        for session in patient["sessions"]:
            rows = query(s, "select muscle, ai, synkinesis, synkinesis_flag "
                            "from session_muscle_summary where session_id = %s", (session["session_id"],))
            got = {m: (ai, syn, flag) for m, ai, syn, flag in rows}
            for muscle, t in session["muscles"].items():
                assert muscle in got, f"{muscle} missing in session {session['session_id']}"
                assert got[muscle][0] == pytest.approx(t["ai"], abs=0.05), (patient["device_id"], muscle)
                checked += 1
            for syn in session["synkinesis"]:
                if syn["present"]:
                    assert got[syn["muscle"]][2], f"synkinesis of {syn['muscle']} not flagged"
            if not any(x["present"] for x in session["synkinesis"]):
                assert not any(flag for _ai, _syn, flag in got.values())
    assert checked == 3 * 2 * 4


def test_injected_faults_raise_alerts(pipeline_settings: Settings, services) -> None:
    s = pipeline_settings
    sim = Simulation(patients=3, sessions=1, duration_s=60, seed=5, fault_prob=1.0, device_prefix="e2e-flt")
    worker, sink = services("worker"), services("sink")
    asyncio.run(run_simulation(sim, s, via="kafka"))
    wait_for(lambda: _analysed(s, sim), 240, "every session summarised", [worker, sink])

    for patient in sim.truth()["patients"]:
        device = patient["device_id"]
        alerts = query(s, "select alert_type, channel, raised_at, cleared_at from alert where device_id = %s",
                       (device,))
        kinds = {a[0] for a in alerts}
        for session in patient["sessions"]:
            for fault in session["faults"]:
                want = FAULT_ALERT.get(fault["type"])
                if want is None:
                    continue
                assert want in kinds, f"{device}: {fault['type']} injected, no {want} alert ({sorted(kinds)})"
                if fault["type"] == "electrode_liftoff":
                    assert any(a[0] == "electrode_off" and a[1] == fault["channel"] for a in alerts)
                if fault["type"] in ("electrode_liftoff", "over_current", "silent_device"):
                    # these faults end inside the session: their alert is cleared again
                    assert any(a[0] == want and a[3] is not None for a in alerts), f"{device}: {want} never cleared"

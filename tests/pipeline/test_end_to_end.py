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


#: per-session measures against the simulator's truth (computed by processors.measures from its clean
#: signals): the largest differences allowed. Measured 2026-12-01 (2 seeds, 12 sessions, 48 muscles): AI
#: 0.036, ratio 0.036, %MVC 9.1 % relative, synkinesis index 0.073.
TOLERANCE = {"ai": 0.05, "ratio": 0.06, "pct_mvc_rel": 0.12, "synkinesis": 0.10}


def test_session_measures_match_the_truth(pipeline_settings: Settings, services) -> None:
    """AI, affected/healthy ratio, %MVC and synkinesis of every session within TOLERANCE of the truth,
    over two seeds: 50 and 60 Hz patients, microcurrent and exercise sessions, both affected sides."""
    s = pipeline_settings
    sims = [Simulation(patients=3, sessions=2, duration_s=40, seed=seed, fault_prob=0.0, device_prefix=prefix)
            for seed, prefix in ((31, "e2e-acc"), (12, "e2e-acc2"))]
    assert {p.mains_hz for sim in sims for p in sim.patients} == {50.0, 60.0}
    assert {p.affected_side.value for sim in sims for p in sim.patients} == {"L", "R"}
    assert {plan.therapy_type for sim in sims for plans in sim.plans for plan in plans} == {
        "microcurrent", "biofeedback_exercise"}
    for sim in sims:
        register_simulation(sim, s, kdf_n=2**10)  # patients with their affected side, devices with their map
    worker, sink = services("worker"), services("sink")

    async def stream() -> None:
        await asyncio.gather(*(run_simulation(sim, s, via="kafka") for sim in sims))

    asyncio.run(stream())
    wait_for(lambda: all(_analysed(s, sim) for sim in sims), 300, "every session summarised and analysed",
             [worker, sink])

    worst = dict.fromkeys(TOLERANCE, 0.0)
    checked = 0
    for sim in sims:
        # every frame counted for its session, although session events and frames travel unordered
        for i, device in enumerate(sim.device_ids):
            want: dict[str, int] = {}
            for rec in sim.device_records(i):
                if rec.kind == wire.KIND_FRAME:
                    want[str(rec.item.session_id)] = want.get(str(rec.item.session_id), 0) + 1
            got = dict(query(s, "select session_id::text, frames from session_summary where device_id = %s "
                                "and status = 'ended'", (device,)))
            assert got == want, device
        for patient in sim.truth()["patients"]:
            for session in patient["sessions"]:
                sid = session["session_id"]
                got = {m: row for m, *row in query(
                    s, "select muscle, ai, ratio, left_pct_mvc, right_pct_mvc, synkinesis_flag "
                       "from session_muscle_summary where session_id = %s", (sid,))}
                for muscle, t in session["muscles"].items():
                    assert muscle in got, f"{muscle} missing in session {sid}"
                    ai, ratio, pl, pr, _flag = got[muscle]
                    where = (patient["device_id"], sid, muscle)
                    worst["ai"] = max(worst["ai"], abs(ai - t["ai"]))
                    worst["ratio"] = max(worst["ratio"], abs(ratio - t["ratio_affected_healthy"]))
                    for g, w in ((pl, t["left_pct_mvc"]), (pr, t["right_pct_mvc"])):
                        worst["pct_mvc_rel"] = max(worst["pct_mvc_rel"], abs(g - w) / w)
                    assert ai == pytest.approx(t["ai"], abs=TOLERANCE["ai"]), where
                    assert ratio == pytest.approx(t["ratio_affected_healthy"], abs=TOLERANCE["ratio"]), where
                    assert pl == pytest.approx(t["left_pct_mvc"], rel=TOLERANCE["pct_mvc_rel"]), where
                    assert pr == pytest.approx(t["right_pct_mvc"], rel=TOLERANCE["pct_mvc_rel"]), where
                    checked += 1
                syn = {(t, m): (i, f) for t, m, i, f in query(
                    s, "select target_task, muscle, index, flag from session_synkinesis where session_id = %s",
                    (sid,))}
                for x in session["synkinesis"]:
                    i, flag = syn[(x["target_task"], x["muscle"])]
                    if x["index"] is None:
                        assert i is None, (sid, x)
                    else:
                        worst["synkinesis"] = max(worst["synkinesis"], abs(i - x["index"]))
                        assert i == pytest.approx(x["index"], abs=TOLERANCE["synkinesis"]), (sid, x)
                    if x["present"]:
                        assert got[x["muscle"]][4], f"synkinesis of {x['muscle']} not flagged"
                if not any(x["present"] for x in session["synkinesis"]):
                    assert not any(row[4] for row in got.values())
    print("largest differences from the truth:", {k: round(v, 4) for k, v in worst.items()})
    assert checked == 2 * 3 * 2 * 4


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

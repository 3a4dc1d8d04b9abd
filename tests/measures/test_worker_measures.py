"""The worker's live measures (processors/worker/device/) on a simulated session: activations
attributed to their task repetition with an onset latency from the cue, and the 1 s balance by the
measures' definition (no AI for a pair at rest)."""

from __future__ import annotations

import numpy as np

from ingest import wire
from ingest.simulator import Simulation
from mimetic.domain import MUSCLES
from processors import records as R
from processors.worker.device import DeviceProcessor, WorkerParams, balance


def test_balance_definition_closed_form() -> None:
    # envelope RMS sqrt(30^2 + 5^2) left, sqrt(90^2 + 5^2) right over a rest level of 5 µV each
    left, right, ai, ratio = balance(float(np.hypot(30, 5)), float(np.hypot(90, 5)), "L", 5.0, 5.0)
    assert abs(left - 30.0) < 1e-9 and abs(right - 90.0) < 1e-9
    assert abs(ai - (-0.5)) < 1e-12 and abs(ratio - 1 / 3) < 1e-12
    # at rest (both sides at their rest level): no AI, not "symmetric"
    assert balance(5.0, 5.2, "L", 5.0, 5.0)[2:] == (None, None)
    assert balance(40.0, 20.0, None, 5.0, 5.0)[3] is None  # affected side unknown: no ratio


def test_live_activations_carry_task_and_latency() -> None:
    sim = Simulation(patients=1, sessions=1, duration_s=40, seed=2, fault_prob=0.0,
                     therapy_types=("biofeedback_exercise",))
    dev = sim.device_ids[0]
    proc = DeviceProcessor(dev, WorkerParams())
    out: list[R.Record] = []
    for rec in sim.device_records(0):
        if rec.kind == wire.KIND_FRAME:
            out += proc.on_frame(rec.item, wire.encode_frame(rec.item))[0]
        elif rec.kind == wire.KIND_EVENT:
            out += proc.on_event(rec.item)
    truth = sim.truth()["patients"][0]["sessions"][0]
    acts = [r for r in out if isinstance(r, R.ActivationRecord)]
    targets = [a for a in acts if a.target]
    assert len(targets) >= 6
    windows = {(w["task"], w["repetition"]): (w["start_us"] / 1e6, w["stop_us"] / 1e6) for w in truth["tasks"]}
    for a in targets:
        assert a.task == MUSCLES[a.muscle]
        start, stop = windows[(a.task, a.repetition)]
        assert start <= a.onset.timestamp() < stop
        # the simulator's reaction latency is 0.15-0.35 s before a 0.2 s rise
        assert 0.05 <= a.onset_latency_s <= 0.6, (a.task, a.onset_latency_s)
    # an activation outside every task window has no task, no latency
    assert all(a.onset_latency_s is None for a in acts if a.task is None)
    # the 1 s balance: only for active windows, AI in [-1, 1], values are the activity levels
    bal = [r for r in out if isinstance(r, R.BalanceRecord) and r.window_kind == "sliding"]
    assert bal and all(-1.0 <= b.ai <= 1.0 for b in bal)
    rest = windows[("rest", 1)]
    assert not [b for b in bal if rest[0] + 1 <= b.time.timestamp() and b.time_end.timestamp() <= rest[1]]

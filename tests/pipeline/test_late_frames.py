"""Alerts raised from frames that arrive after the next session has started
(`processors.worker.device.late_frames`): attached to their own session, counted in its summary, and
cleared at its end, never left open in the next session."""

from __future__ import annotations

import dataclasses

import pytest

from ingest import wire
from ingest.simulator import Simulation
from processors import records as R
from processors.worker.device import DeviceProcessor, WorkerParams

START_US = 1_780_000_000_000_000
LATE_S = 3.0  # the first session's last seconds of frames arrive after the second session's start


def _stream(end_late_s: float) -> tuple[list, Simulation]:
    """Two 30 s sessions 10 s apart; the first one's last `LATE_S` of frames railed on channel 0
    (clipping) and held back until after the second session's start; its end event dated
    `end_late_s` after its last sample (so with > 0 its frames never reach it)."""
    sim = Simulation(patients=1, sessions=2, duration_s=30, channels=2, seed=11, fault_prob=0.0,
                     session_gap_s=40.0, start_us=START_US, frame_ms=250)
    recs = list(sim.device_records(0))
    a_end_us = sim.plans[0][0].t0_us + 30_000_000
    late, kept = [], []
    for r in recs:
        if r.kind == wire.KIND_FRAME and r.session_index == 0 and r.item.t_us >= a_end_us - LATE_S * 1e6:
            samples = r.item.samples.copy()
            samples[0, ::2] = 32767
            late.append(dataclasses.replace(r, item=dataclasses.replace(r.item, samples=samples)))
            continue
        if r.kind == wire.KIND_EVENT and isinstance(r.item, wire.SessionEnd) and r.session_index == 0:
            r = dataclasses.replace(r, item=r.item.model_copy(update={"t_us": a_end_us + int(end_late_s * 1e6)}))
        kept.append(r)
        if r.kind == wire.KIND_EVENT and isinstance(r.item, wire.SessionStart) and r.session_index == 1:
            kept += late
    return kept, sim


def _run(recs: list) -> list[R.Record]:
    dp = DeviceProcessor("d", WorkerParams())
    dp.device_id = recs[0].item.device_id
    out: list[R.Record] = []
    for r in recs:
        if r.kind == wire.KIND_FRAME:
            out += dp.on_frame(r.item, wire.encode_frame(r.item))[0]
        elif r.kind == wire.KIND_TELEMETRY:
            out += dp.on_telemetry(r.item)
        else:
            out += dp.on_event(r.item)
    return out


@pytest.mark.parametrize("end_late_s", [0.0, 0.5], ids=["last-frame-closes", "next-session-frame-closes"])
def test_alerts_of_late_frames_stay_in_their_session(end_late_s: float) -> None:
    recs, sim = _stream(end_late_s)
    out = _run(recs)
    a, b = sim.plans[0][0], sim.plans[0][1]
    a_end_s = a.t0_us / 1e6 + 30.0 + end_late_s
    alerts = [r for r in out if isinstance(r, R.AlertRecord)]
    late = [r for r in alerts if r.alert_type == "clipping"]
    assert [r.state for r in late] == ["raised", "cleared"], alerts
    raised, cleared = late
    assert raised.session_id == cleared.session_id == a.session_id
    assert raised.alert_id == cleared.alert_id
    assert a_end_s - LATE_S <= raised.time.timestamp() <= a_end_s
    assert cleared.time.timestamp() == pytest.approx(a_end_s)
    # nothing of the first session in the second: every alert dated inside its own session
    for r in alerts:
        plan = a if r.session_id == a.session_id else b
        assert r.session_id == plan.session_id
        lo = plan.t0_us / 1e6
        hi = lo + 30.0 + (end_late_s if plan is a else 0.0)
        assert lo <= r.raised_at.timestamp() and r.time.timestamp() <= hi + 1e-6, r
    by_id: dict[str, list[str]] = {}
    for r in alerts:
        by_id.setdefault(r.alert_id, []).append(r.state)
    assert all(states == ["raised", "cleared"] for states in by_id.values()), by_id
    # each session's final summary counts its own alerts
    finals = {s.session_id: s for s in out if isinstance(s, R.SessionSummary) and s.status == "ended"}
    for plan in (a, b):
        n = sum(1 for r in alerts if r.state == "raised" and r.session_id == plan.session_id)
        assert finals[plan.session_id].alerts == n, plan.session_id

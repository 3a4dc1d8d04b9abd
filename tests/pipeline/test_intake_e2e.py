"""Issue 14's "done when": a patient created only through `mimetic patients` and a device
assignment, streaming through the gateway (no simulator shortcut into the database), gets
a full session analysis: affected/healthy ratio, synkinesis, %MVC and adherence against
the course plan."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone

from decimal import Decimal

import psycopg
import pytest
import requests
from typer.testing import CliRunner

from ingest import registry, wire
from ingest.runner import run_simulation
from ingest.simulator import Simulation
from mimetic.config import Settings
from tests.ingest.conftest import GatewayProc

from .conftest import query, wait_for

pytestmark = [pytest.mark.stack, pytest.mark.slow]


def test_patient_from_intake_gets_a_full_session_analysis(pipeline_settings: Settings, services) -> None:
    from mimetic.cli import app

    s = pipeline_settings
    tag = uuid.uuid4().hex[:6]
    clinic, code = f"intake-{tag}", f"P-IN{tag}".upper()
    sim = Simulation(patients=1, sessions=2, duration_s=40, seed=4, fault_prob=0.0, device_prefix=f"intake{tag}",
                     clinic_id=clinic, therapy_types=("microcurrent",))
    device, truth = sim.device_ids[0], sim.patients[0]
    start = datetime.fromtimestamp(sim.start_us / 1e6, timezone.utc)
    with psycopg.connect(s.db_dsn(), autocommit=True) as conn:   # `mimetic devices add`, no patient
        registry.ensure_clinic(conn, clinic)
        secret = registry.add_device(conn, clinic_id=clinic, device_id=device, fs_hz=sim.fs_hz,
                                     channel_map=sim.channel_map, kdf_n=2**10)

    def run(*args: str) -> None:
        r = CliRunner().invoke(app, ["--database", s.pg_database, *args])
        assert r.exit_code == 0, r.output

    run("patients", "add", code, "--clinic", clinic, "--side", truth.affected_side.value, "--etiology",
        truth.etiology, "--onset", (start - timedelta(days=30)).date().isoformat(), "--hb", "4",
        "--consent-care", (start - timedelta(days=1)).date().isoformat())
    run("courses", "add", code, "--type", "microcurrent", "--start", start.date().isoformat(), "--sessions", "2",
        "--minutes", "1", "--current-limit-ua", "400")
    run("devices", "assign", device, "--patient", code, "--from", (start - timedelta(hours=1)).isoformat())

    gw = GatewayProc(s)
    worker, sink = services("worker"), services("sink")
    try:
        gw.wait_healthy()
        via_gw = s.model_copy(update={"gateway_url": gw.url})
        stats = asyncio.run(run_simulation(sim, via_gw, via="gateway", secrets={device: secret}, realtime=False,
                                           max_rate=180.0))   # under the gateway's per-device rate
        assert stats, stats
        sids = [str(plan.session_id) for plan in sim.plans[0]]
        # the patient's app answers the SAQ at the end of the last session: a `pro` session event
        last = sim.plans[0][-1]
        answered_us = last.t0_us + int(30e6)
        r = requests.post(f"{gw.url}/v1/devices/{device}/events", timeout=30, headers={
            "Authorization": f"Bearer {secret}", "Content-Type": "application/json"}, json={
            "type": "pro", "seq": 1_000_000, "t_us": answered_us, "session_id": str(last.session_id),
            "instrument": "saq", "item_answers": [3, 2, 2, 3, 1, 2, 2, 1, 2]})
        assert r.status_code == 202, r.text
        frames: dict[str, int] = {}
        for rec in sim.device_records(0):
            if rec.kind == wire.KIND_FRAME:
                frames[str(rec.item.session_id)] = frames.get(str(rec.item.session_id), 0) + 1

        def analysed() -> bool:
            got = dict(query(s, "select session_id::text, frames from session_summary where status = 'ended' "
                                "and session_id = any(%s::uuid[])", (sids,)))
            dirty = query(s, "select count(*) from app.session_dirty where session_id = any(%s::uuid[])", (sids,))
            muscles = query(s, "select count(*) from session_muscle_summary where session_id = any(%s::uuid[])",
                            (sids,))
            pros = query(s, "select count(*) from patient_reported_outcome where device_id = %s", (device,))
            return got == frames and dirty[0][0] == 0 and muscles[0][0] > 0 and pros[0][0] == 1

        wait_for(analysed, 240, "every frame stored and both sessions analysed", [worker, sink])
    finally:
        gw.stop()

    pid = query(s, "select patient_id from patient where code = %s", (code,))[0][0]
    assert {r[0] for r in query(s, "select patient_id from session_summary where session_id = any(%s::uuid[])",
                                (sids,))} == {pid}
    rows = query(s, "select muscle, ratio, synkinesis, left_pct_mvc, right_pct_mvc from session_muscle_summary "
                    "where session_id = any(%s::uuid[])", (sids,))
    assert rows and all(r[1] is not None for r in rows), rows          # affected/healthy ratio: side known
    assert any(r[2] is not None for r in rows), rows                   # synkinesis (seed 4: the patient has it)
    assert all(r[3] is not None and r[4] is not None for r in rows), rows   # %MVC both sides
    done, pct, limit = query(s, "select sessions_done, sessions_done_pct, current_limit_ua from course_adherence "
                                "where patient_code = %s", (code,))[0]
    assert (done, float(pct), limit) == (2, 100.0, 400.0)
    # the app's PRO, stored by the pipeline's normal path (the sink's own login) for this patient
    got = query(s, "select patient_id, instrument, score, item_answers, source, session_id::text, answered_at "
                   "from patient_reported_outcome where device_id = %s", (device,))
    assert got == [(pid, "saq", Decimal("40.00"), [3, 2, 2, 3, 1, 2, 2, 1, 2], "app", str(last.session_id),
                    datetime.fromtimestamp(answered_us / 1e6, timezone.utc))]

"""The simulator's signal faults (`ingest.sim_faults`): where they are placed, what they do to the
signal."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest import sim_faults
from ingest.simulator import DEVICE_FAULT_TYPES, Fault, quantize


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.floats(20.0, 600.0), st.integers(1, 8),
       st.lists(st.tuples(st.sampled_from(DEVICE_FAULT_TYPES), st.floats(0, 1), st.floats(3, 60)), max_size=6))
def test_signal_faults_stay_clear_of_what_would_hide_them(seed: int, duration_s: float, channels: int,
                                                          others: list) -> None:
    device = [Fault(t, a * duration_s, min(duration_s, a * duration_s + n)) for t, a, n in others]
    faults = sim_faults.plan(np.random.default_rng(seed), duration_s, channels, 1.0, Fault, device)
    for f in faults:
        assert 0.25 * duration_s - 2e-3 <= f.start_s and f.end_s <= duration_s - 2.0 + 2e-3
        assert sim_faults.LENGTH_S[0] - 2e-3 <= f.end_s - f.start_s <= sim_faults.LENGTH_S[1] + 2e-3
        assert 0 <= f.channel < channels
        for g in device + faults:
            if g is not f and (g.type in sim_faults.HIDING or g.type in sim_faults.SIGNAL_FAULT_ALERT):
                m = sim_faults.MARGIN_S - 2e-3  # times are rounded to ms
                assert f.end_s + m <= g.start_s or g.end_s + m <= f.start_s
    if duration_s >= 120 and not device:
        assert {f.type for f in faults} == set(sim_faults.SIGNAL_FAULT_TYPES)


def test_clipping_rails_its_channel_and_mains_adds_hum_only_there() -> None:
    fs, n = 2000, 4000
    t = np.arange(n) / fs
    tab = np.arange(n) % fs
    mains = np.sin(2 * np.pi * 50 * tab / fs)[None, :].repeat(3, axis=0)
    clip = Fault("clipping", 0.0, 2.0, 1, {"peak_over_rail": 1.1, "artefact_hz": sim_faults.ARTEFACT_HZ})
    hum = Fault("mains_interference", 0.0, 2.0, 2, {"amplitude_uv": 100.0})
    x = np.zeros((3, n))
    sim_faults.apply([clip, hum], x, t, mains, tab)
    q = quantize(x)
    railed = np.mean((q[1] >= 32767) | (q[1] <= -32768))
    assert 0.15 < railed < 0.45, railed
    assert not x[0].any()
    assert np.sqrt(np.mean(x[2] ** 2)) == pytest.approx(100 / np.sqrt(2), rel=0.01)


def test_every_record_of_a_clipping_session_encodes() -> None:
    """A railed channel sets the envelope's `clipped` bit mask, which must be a plain int: a numpy
    integer there made every such envelope unencodable and stalled the worker on the device."""
    from ingest import wire
    from ingest.simulator import Simulation
    from processors import records as R
    from processors.worker.device import DeviceProcessor, WorkerParams

    sim = Simulation(patients=1, sessions=1, duration_s=60, channels=2, seed=2, fault_prob=0.0,
                     frame_ms=250, start_us=1_780_000_000_000_000)
    plan = sim.plans[0][0]
    plan.faults = [Fault("clipping", 20.0, 34.0, 1, {"peak_over_rail": 1.1, "artefact_hz": sim_faults.ARTEFACT_HZ})]
    dp = DeviceProcessor(sim.device_ids[0], WorkerParams())
    clipped = 0
    for rec in sim.device_records(0):
        if rec.kind == wire.KIND_FRAME:
            out = dp.on_frame(rec.item, wire.encode_frame(rec.item))[0]
        elif rec.kind == wire.KIND_TELEMETRY:
            out = dp.on_telemetry(rec.item)
        else:
            out = dp.on_event(rec.item)
        for r in out:
            R.encode(r)
            clipped += isinstance(r, R.EnvelopeFrame) and r.clipped == 2
    assert clipped >= 20

"""Fatigue: the per-activation definition, the worker's fits against the simulator's truth."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from ingest import wire
from ingest.simulator import Simulation
from processors import records as R
from processors.measures.activation import active_minutes
from processors.measures.fatigue import activation_fatigue, session_fatigue_slope
from processors.worker.device import DeviceProcessor, WorkerParams
from processors.worker.fatigue import MAX_WINDOWS, FatiguePart

SLOPE_TOL_HZ_S = 1.2  # per 15 s activation: the MDF of 1 s windows scatters by ~3 Hz
MEAN_SLOPE_TOL_HZ_S = 0.3  # over the activations of the run
MDF_TOL_HZ = 6.0  # the notch and the white noise floor shift the spectrum a little


def test_activation_fatigue_definition() -> None:
    t0 = np.arange(0.0, 9.0, 0.5)
    med = 100.0 - 2.0 * (t0 + 0.5)
    f = activation_fatigue(t0, t0 + 1.0, med, med + 10.0, onset_s=1.0, offset_s=8.0, min_duration_s=3.0)
    assert f is not None and f.windows == 13  # windows [1, 2) ... [7, 8)
    assert f.median_freq_slope_hz_s == pytest.approx(-2.0) and f.mean_freq_slope_hz_s == pytest.approx(-2.0)
    assert f.median_freq_hz == pytest.approx(100.0 - 2.0 * 4.5)
    # too short, or too few valid windows: none (never 0)
    assert activation_fatigue(t0, t0 + 1.0, med, med, 1.0, 3.9, 3.0) is None
    nan = np.where(t0 < 6.5, np.nan, med)  # 2 valid windows left inside
    assert activation_fatigue(t0, t0 + 1.0, nan, nan, 1.0, 8.0, 3.0) is None
    assert session_fatigue_slope([-1.0, None, -2.0, float("nan")]) == pytest.approx(-1.5)
    assert session_fatigue_slope([None]) is None


def test_active_minutes_is_the_union() -> None:
    assert active_minutes([(0.0, 30.0), (10.0, 40.0), (50.0, 60.0), (55.0, 58.0)]) == pytest.approx(50.0 / 60)
    assert active_minutes([]) == 0.0


def _run(sim: Simulation, i: int) -> list[R.Record]:
    proc = DeviceProcessor(sim.device_ids[i], WorkerParams())
    out: list[R.Record] = []
    for rec in sim.device_records(i):
        if rec.kind == wire.KIND_FRAME:
            out += proc.on_frame(rec.item, wire.encode_frame(rec.item))[0]
        elif rec.kind == wire.KIND_EVENT:
            out += proc.on_event(rec.item)
    assert len(proc.to_state()) < 100_000
    return out


def test_worker_fatigue_matches_the_simulator_truth() -> None:
    # two patients, one exercise and one microcurrent session, every task held 15 s
    sim = Simulation(patients=2, sessions=1, duration_s=60, seed=4, hold_s=15.0, fault_prob=0.0)
    errors = []
    for i in range(2):
        acts = [r for r in _run(sim, i) if isinstance(r, R.ActivationRecord)]
        session = sim.truth()["patients"][i]["sessions"][0]
        start_s = session["start_us"] / 1e6
        for t in session["fatigue"]:
            if t["offset_s"] - t["onset_s"] < 10.0:
                continue  # the calibration: too short for a slope worth comparing
            match = [a for a in acts if a.channel == t["channel"]
                     and abs(a.onset.timestamp() - start_s - t["onset_s"]) < 0.5]
            assert len(match) == 1, (i, t)
            a = match[0]
            assert a.median_freq_slope_hz_s is not None and a.mean_freq_slope_hz_s is not None
            assert t["median_freq_slope_hz_s"] < -0.5  # the model fatigues
            err = a.median_freq_slope_hz_s - t["median_freq_slope_hz_s"]
            assert abs(err) <= SLOPE_TOL_HZ_S, (i, t, a)
            assert abs(a.mean_freq_slope_hz_s - t["mean_freq_slope_hz_s"]) <= SLOPE_TOL_HZ_S, (i, t, a)
            assert abs(a.median_freq_hz - t["median_freq_hz"]) <= MDF_TOL_HZ, (i, t, a)
            errors.append(err)
        # activations shorter than the minimum carry no fatigue
        assert all(a.median_freq_slope_hz_s is None for a in acts if a.duration_s < 3.0)
    assert len(errors) >= 8
    assert abs(float(np.mean(errors))) <= MEAN_SLOPE_TOL_HZ_S, errors


def test_fatigue_part_state_is_bounded() -> None:
    big = FatiguePart(10_000.0, 64, 3.0)  # beyond the facial montage: no fatigue, no spectral state
    big.feed(np.zeros((64, 1000)))
    assert big.tracker is None and len(str(big.to_state())) < 100
    part = FatiguePart(4000.0, 18, 3.0)  # the largest tracked: 18 channels at 4 kHz
    rng = np.random.default_rng(0)
    for _ in range(800):  # 40 s in 50 ms frames, every channel "open" the whole time
        part.feed(rng.standard_normal((18, 200)))
        part.trim([True] * 18)
        assert max(len(w) for w in part.windows) <= MAX_WINDOWS
    assert len(msgspec.msgpack.encode(part.to_state())) < 200_000
    part.feed(rng.standard_normal((18, 4000)))
    part.trim([False] * 18)  # at rest: the last 1.5 s only
    assert max(len(w) for w in part.windows) <= 2


def test_offline_dsp_fatigue_uses_the_same_definition() -> None:
    """`mimetic dsp`'s fatigue of the longest activation is within the tolerance of the truth too."""
    from processors.dsp.offline import process_signals

    sim = Simulation(patients=1, sessions=1, duration_s=30, seed=6, hold_s=15.0, fault_prob=0.0,
                     therapy_types=("biofeedback_exercise",))
    x = np.concatenate([r.item.microvolts() for r in sim.device_records(0) if r.kind == wire.KIND_FRAME], axis=1)
    names = [f"{c['muscle']}_{c['side']}" for c in sim.channel_map]
    res = process_signals(x, float(sim.fs_hz), names, mains_hz=sim.patients[0].mains_hz)
    truth = {t["channel"]: t for t in sim.truth()["patients"][0]["sessions"][0]["fatigue"]
             if t["task"] != "mvc_calibration"}
    assert truth
    for ch, t in truth.items():
        f = res.report["channels"][ch]["fatigue"]
        assert f is not None and abs(f["onset_s"] - t["onset_s"]) < 0.5
        assert abs(f["median_freq_slope_hz_per_s"] - t["median_freq_slope_hz_s"]) <= SLOPE_TOL_HZ_S, (ch, f, t)
        assert abs(f["median_freq_hz"] - t["median_freq_hz"]) <= MDF_TOL_HZ

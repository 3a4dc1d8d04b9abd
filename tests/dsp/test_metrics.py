"""Known-answer tests of each metric on synthetic signals."""

from __future__ import annotations

import numpy as np
import pytest

from processors.dsp.activation import baseline_from_rest, detect_activations, estimate_baseline
from processors.dsp.balance import affected_ratio, asymmetry_index, pair_balance, window_balance
from processors.dsp.envelope import EnvelopeTiming, moving_rms
from processors.dsp.fatigue import fatigue_slope, frequency_track
from processors.dsp.filters import condition, mains_harmonics_hz, make_notch, CombNotch, SOSFilter
from processors.dsp.offline import process_signals
from processors.dsp.quality import (blank_pulses, channel_quality, clipping_fraction, detect_mains,
                                    detect_stim_pulses, flat_fraction)
from processors.dsp.spectrum import median_mean_frequency, welch_psd
from processors.dsp.synkinesis import synkinesis

from .synth import burst_signal, emg_noise

FS = 2000.0


def gain_db(x_in: np.ndarray, y_out: np.ndarray) -> float:
    return 20 * np.log10(np.std(y_out[..., 4000:]) / np.std(x_in[..., 4000:]))


def test_notch_removes_mains_and_harmonics_keeps_emg() -> None:
    t = np.arange(int(4 * FS)) / FS
    assert mains_harmonics_hz(FS, 50.0)[-1] == 950.0 and mains_harmonics_hz(1000.0, 60.0)[-1] == 480.0
    for mains, kind in ((50.0, CombNotch), (60.0, SOSFilter)):
        assert isinstance(make_notch(FS, mains, 1), kind)
        for h in (1, 3, 7):
            tone = np.sin(2 * np.pi * mains * h * t)
            assert gain_db(tone, condition(tone, FS, mains_hz=mains)) < -30, (mains, h)
        probe = np.sin(2 * np.pi * (mains * 1.5) * t)  # between harmonics: passes
        assert abs(gain_db(probe, condition(probe, FS, mains_hz=mains))) < 1.0
    low = np.sin(2 * np.pi * 3.0 * t)  # motion artefact: band-pass removes it
    assert gain_db(low, condition(low, FS, mains_hz=None)) < -40


def test_offset_does_not_ring() -> None:
    x = np.full(4000, 2048.0) + np.random.default_rng(0).normal(size=4000)
    y = condition(x, FS)
    assert np.max(np.abs(y)) < 10


def test_moving_rms_known_value_and_timing() -> None:
    x = np.sin(2 * np.pi * 100 * np.arange(4000) / FS) * 10.0
    env, t = moving_rms(x, FS, 0.1, 0.01)
    np.testing.assert_allclose(env[0], 10 / np.sqrt(2), rtol=1e-9)
    timing = EnvelopeTiming.from_seconds(FS, 0.1, 0.01)
    assert env.shape[1] == timing.count(4000) == 191
    assert t[0] == pytest.approx(0.05) and timing.envelope_fs_hz == 100.0


BURSTS = [(1.0, 1.8, 150.0), (2.6, 3.1, 80.0), (4.0, 5.5, 200.0)]


@pytest.mark.parametrize("seed,mains", [(1, None), (2, None), (3, 50.0), (4, 60.0)])
def test_onsets_within_20_ms(seed: int, mains: float | None) -> None:
    rng = np.random.default_rng(seed)
    x = burst_signal(FS, 6.5, BURSTS, 8.0, rng, mains=(mains, 40.0) if mains else None) + 500.0
    # bursts from 1 s on, inside the causal baseline's 3 s warm-up: the edge rule on a known baseline
    res = process_signals(x[None, :], FS, ["zygomaticus_L"], mains_hz="auto", baseline="whole-recording")
    assert res.mains_hz == mains
    acts = res.activations[0]
    assert len(acts) == len(BURSTS)
    for a, (on, off, amp) in zip(acts, BURSTS):
        assert abs(a.onset_s - on) < 0.020
        # a notch rings after each burst (see filters.DEFAULT_NOTCH_Q); the edges compensate it
        assert abs(a.offset_s - off) < 0.030
        assert a.peak == pytest.approx(amp, rel=0.3)
        assert a.mean == pytest.approx(amp, rel=0.25)
        # area: the envelope samples inside [onset, offset), 100 per second
        assert a.area == pytest.approx(a.mean * (off - on), rel=0.05)


def test_rest_baseline_and_min_durations() -> None:
    rng = np.random.default_rng(4)
    x = burst_signal(FS, 4.0, [(1.0, 1.03, 300.0), (2.0, 2.5, 100.0), (2.54, 3.0, 100.0)], 5.0, rng)
    env, _ = moving_rms(condition(x, FS, mains_hz=None), FS, 0.05, 0.005)
    timing = EnvelopeTiming.from_seconds(FS, 0.05, 0.005)
    b = baseline_from_rest(env[0, :150])
    assert b.mean == pytest.approx(5.0, rel=0.2)
    acts = detect_activations(env[0], timing, b.threshold, min_on_s=0.15, min_off_s=0.1)
    # the 30 ms spike is too short; the 40 ms gap is bridged
    assert len(acts) == 1 and acts[0].onset_s == pytest.approx(2.0, abs=0.02) and acts[0].offset_s == pytest.approx(3.0, abs=0.03)
    assert estimate_baseline(env[0], timing.envelope_fs_hz).mean == pytest.approx(5.0, rel=0.3)


@pytest.mark.parametrize("ratio", [1.0, 0.7, 0.4, 0.1])
def test_asymmetry_on_clean_pairs(ratio: float) -> None:
    rng = np.random.default_rng(5)
    bursts_l = [(1.0, 3.0, 100.0 * ratio)]
    bursts_r = [(1.0, 3.0, 100.0)]
    x = np.vstack([burst_signal(FS, 4.0, bursts_l, 3.0, rng), burst_signal(FS, 4.0, bursts_r, 3.0, rng)])
    res = process_signals(x, FS, ["zygomaticus_L", "zygomaticus_R"], mains_hz=None, baseline="whole-recording")
    (pair,) = res.report["pairs"]
    expect_ai = (ratio - 1) / (ratio + 1)
    assert pair["muscle"] == "zygomaticus"
    assert pair["asymmetry_index"] == pytest.approx(expect_ai, abs=0.02)
    assert pair["ratio"] == pytest.approx(ratio, abs=0.03)
    assert pair["affected_side"] == ("L" if ratio < 1 else pair["affected_side"])


def test_balance_silence_is_undefined_not_infinite() -> None:
    assert np.isnan(asymmetry_index(0.0, 0.0))
    assert np.isnan(asymmetry_index(2.0, 2.5, rest_left=3.0, rest_right=3.0))
    assert asymmetry_index(10.0, 0.0) == 1.0
    assert np.isnan(affected_ratio(10.0, 0.0, "L"))  # healthy side silent: undefined
    assert affected_ratio(0.0, 10.0, "L") == 0.0
    ai = asymmetry_index(np.array([0, 1, 3, 0.0]), np.array([0, 1, 1, 5.0]))
    assert np.isnan(ai[0]) and ai[1] == 0 and ai[2] == 0.5 and ai[3] == -1
    pb = pair_balance("frontalis", 1.0, 1.0, "R", 2.0, 2.0).to_dict()
    assert pb["asymmetry_index"] is None and pb["ratio"] is None
    t = np.arange(100) / 10
    wb = window_balance(np.full(100, 3.0), np.full(100, 1.0), t, [(0, 5), (20, 30)], affected="R")
    assert wb[0] == (0.5, pytest.approx(1 / 3)) and np.isnan(wb[1][0])


def test_fatigue_slope_negative_and_median_frequency() -> None:
    rng = np.random.default_rng(6)
    f, p = welch_psd(emg_noise(20000, FS, rng, (80.0, 120.0)), FS, 0.25)
    med, mean = median_mean_frequency(f, p, (20.0, 450.0))
    assert med[0] == pytest.approx(100.0, abs=5) and mean[0] == pytest.approx(100.0, abs=8)
    # a contraction whose spectrum slides from ~120 to ~80 Hz over 20 s
    segs = [emg_noise(int(FS), FS, rng, (100.0 - 2 * k - 30, 140.0 - 2 * k)) for k in range(20)]
    track = frequency_track(np.concatenate(segs), FS, 1.0, 1.0)
    fs_ = fatigue_slope(track.times_s, track.median_hz[0])
    assert fs_.slope_hz_per_s == pytest.approx(-2.0, abs=0.5) and fs_.relative_per_min < 0


def test_synkinesis_affected_side_coactivation() -> None:
    t = np.arange(600) / 100.0
    on = (t >= 1) & (t <= 2)
    oculi = {"L": np.where(on, 30.0, 2.0), "R": np.where(on, 5.0, 2.0)}
    smile = {"L": [(1.0, 2.0)], "R": [(1.0, 2.0)]}
    s = synkinesis("zygomaticus", "orbicularis_oculi", "L", t, oculi, smile, {"L": 2.0, "R": 2.0})
    # activity levels: rest removed in the power domain
    assert s.level_affected == pytest.approx(np.sqrt(30.0**2 - 4.0)) and s.level_healthy == pytest.approx(np.sqrt(21.0))
    assert s.ratio > 5 and s.difference > 20 and s.index == pytest.approx((29.933 - 4.583) / (29.933 + 4.583), abs=1e-3)
    s0 = synkinesis("zygomaticus", "orbicularis_oculi", "L", t, oculi, {"L": [], "R": []})
    assert s0.level_affected is None and s0.ratio is None


def test_quality_metrics_known_answers() -> None:
    rng = np.random.default_rng(8)
    t = np.arange(int(5 * FS)) / FS
    emg = burst_signal(FS, 5.0, [(2.0, 3.0, 100.0)], 5.0, rng)
    assert detect_mains(emg + 20 * np.sin(2 * np.pi * 60 * t), FS) == 60.0
    assert detect_mains(emg + 20 * np.sin(2 * np.pi * 50 * t), FS) == 50.0
    assert detect_mains(emg, FS) is None
    clipped = np.clip(emg * 3, -200, 200)
    assert clipping_fraction(clipped) > 0.02 and clipping_fraction(emg) == 0.0
    assert clipping_fraction(clipped, full_scale=(-200, 200)) == pytest.approx(clipping_fraction(clipped), abs=0.02)
    flat = emg.copy()
    flat[:6000] = 12.0
    assert flat_fraction(flat, FS) == pytest.approx(0.6, abs=0.01)
    stim = emg.copy()
    pulses = np.arange(1000, 10000, 250)  # 8 Hz microcurrent pulses, 1 sample wide
    stim[pulses] += 5000.0
    found = detect_stim_pulses(stim, FS)
    assert set(found.tolist()) == set(pulses.tolist()) and detect_stim_pulses(emg, FS).size == 0
    blanked, mask = blank_pulses(stim, found, FS)
    assert mask[pulses].all() and np.abs(blanked).max() < 600
    cond = condition(emg, FS)
    env, _ = moving_rms(cond, FS)
    q = channel_quality(emg + 30 * np.sin(2 * np.pi * 50 * t) + 200 * np.sin(2 * np.pi * 2 * t), cond, env[0], FS, 100.0, 50.0)
    assert q["snr_db"] == pytest.approx(20 * np.log10(100 / 5), abs=3)
    assert q["noise_floor_uv"] == pytest.approx(5.0, rel=0.3)
    assert q["motion_power_ratio"] > 0.5 and q["mains_power_ratio"] > 0.01 and q["electrode_off"] is False
    off = channel_quality(np.full(10000, 3.0), np.zeros(10000), np.zeros(91), FS, 100.0, 50.0)
    assert off["electrode_off"] is True and off["flat_fraction"] == 1.0


def test_task_window_balance_streaming() -> None:
    from processors.dsp.balance import TaskWindowBalance

    rng = np.random.default_rng(9)
    left, right = 30 + rng.normal(size=500), 60 + rng.normal(size=500)
    tb = TaskWindowBalance("zygomaticus", "L", rest_left=2.0, rest_right=2.0)
    for a in range(0, 500, 37):
        tb.add(left[a:a + 37], right[a:a + 37])
        tb = TaskWindowBalance.from_state(tb.to_state())
    r = tb.result()
    assert r.asymmetry_index == pytest.approx(-1 / 3, abs=0.02) and r.ratio == pytest.approx(0.5, abs=0.02)
    assert TaskWindowBalance("frontalis").result().asymmetry_index is None

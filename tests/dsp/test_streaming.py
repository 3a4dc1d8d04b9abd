"""Frame-size invariance of every stateful step, and state round trips mid-stream."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.signal as ss
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.dsp.activation import ActivationDetector
from processors.dsp.balance import SlidingBalance
from processors.dsp.chain import ChainConfig, MultiChannelChain, ChannelChain
from processors.dsp.envelope import EnvelopeTiming, LinearEnvelope, MovingRMS, MovingSum
from processors.dsp.filters import (CombNotch, OffsetRemover, SOSFilter, StimBlanker, design_bandpass,
                                    design_notch_sos, sosfilt_stateful)

from .synth import burst_signal

FS = 1000.0
N = 3000
RNG = np.random.default_rng(7)
SIG = np.vstack([burst_signal(FS, N / FS, [(0.8, 1.6, 200.0)], 10.0, RNG, mains=(50.0, 30.0)) + 2048,
                 burst_signal(FS, N / FS, [(1.2, 2.2, 120.0)], 8.0, RNG) - 300])
SIG[1, 1500:1504] += 20000.0  # a stimulation pulse for the blanker

partitions = st.lists(st.integers(min_value=1, max_value=700), min_size=1, max_size=40)
HYP = settings(max_examples=25, deadline=None)


def cut(n: int, sizes: list[int]) -> list[tuple[int, int]]:
    """Frame boundaries from a list of sizes, repeated until n samples are covered; includes empty frames."""
    out, i, j = [], 0, 0
    while i < n:
        s = sizes[j % len(sizes)]
        out.append((i, min(n, i + s)))
        if j % 7 == 3:
            out.append((min(n, i + s), min(n, i + s)))  # an empty frame now and then
        i += s
        j += 1
    return out


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    scale = max(float(np.max(np.abs(b))), 1e-300) if b.size else 1.0
    return float(np.max(np.abs(a - b))) / scale if a.size else 0.0


def roundtrip(obj, cls):
    return cls.from_state(json.loads(json.dumps(obj.to_state())))


def check_framing(make, cls, x: np.ndarray, sizes: list[int], restore_at: int = 3) -> None:
    whole = make().process(x)
    obj, parts = make(), []
    for k, (a, b) in enumerate(cut(x.shape[-1], sizes)):
        if k == restore_at:
            obj = roundtrip(obj, cls)
        parts.append(obj.process(x[..., a:b]))
    got = np.concatenate(parts, axis=-1)
    assert rel_err(got, whole) < 1e-9


@HYP
@given(partitions)
def test_offset_bandpass_notch_framing(sizes: list[int]) -> None:
    check_framing(lambda: OffsetRemover(2), OffsetRemover, SIG, sizes)
    check_framing(lambda: SOSFilter(design_bandpass(FS), 2), SOSFilter, SIG, sizes)
    check_framing(lambda: CombNotch(FS, 50.0, 2), CombNotch, SIG, sizes)
    check_framing(lambda: SOSFilter(design_notch_sos(FS, 60.0), 2), SOSFilter, SIG, sizes)


@HYP
@given(partitions)
def test_envelopes_framing(sizes: list[int]) -> None:
    check_framing(lambda: MovingRMS.from_seconds(FS, 2, 0.1, 0.01), MovingRMS, SIG - 2048, sizes)
    check_framing(lambda: MovingRMS.from_seconds(FS, 2, 0.05, 0.05), MovingRMS, SIG, sizes)
    check_framing(lambda: MovingSum(2, 7, 3), MovingSum, SIG, sizes)
    check_framing(lambda: LinearEnvelope(FS, 2, 6.0, 4, decimate=10), LinearEnvelope, SIG - 2048, sizes)


@HYP
@given(partitions)
def test_stim_blanker_framing(sizes: list[int]) -> None:
    whole, mask_whole = StimBlanker(FS, 2, 5000.0, 0.004).process(SIG)
    b, ys, ms = StimBlanker(FS, 2, 5000.0, 0.004), [], []
    for k, (a, e) in enumerate(cut(N, sizes)):
        if k == 2:
            b = roundtrip(b, StimBlanker)
        y, m = b.process(SIG[:, a:e])
        ys.append(y)
        ms.append(m)
    assert rel_err(np.concatenate(ys, -1), whole) < 1e-9
    assert (np.concatenate(ms, -1) == mask_whole).all()
    assert mask_whole[1, 1500:1508].all() and mask_whole.sum() >= 8


@HYP
@given(partitions)
def test_activation_detector_framing(sizes: list[int]) -> None:
    timing = EnvelopeTiming.from_seconds(FS, 0.1, 0.01)
    env = MovingRMS(timing, 1).process(SOSFilter(design_bandpass(FS), 2).process(SIG - 2048)[0])[0]
    whole = ActivationDetector(40.0, timing, 0, 0.05, 0.05)
    expect = whole.process(env) + whole.flush()
    assert len(expect) == 1
    det, got = ActivationDetector(40.0, timing, 0, 0.05, 0.05), []
    for k, (a, b) in enumerate(cut(env.size, [max(1, s // 10) for s in sizes])):
        if k == 2:
            det = roundtrip(det, ActivationDetector)
        got += det.process(env[a:b])
    got += det.flush()
    assert got == expect


@HYP
@given(partitions)
def test_sliding_balance_framing(sizes: list[int]) -> None:
    env = np.abs(SIG[:, ::10]) + 1.0
    whole = SlidingBalance(20, 5, "L").process(env[0], env[1])
    sb, ais, ras = SlidingBalance(20, 5, "L"), [], []
    for k, (a, b) in enumerate(cut(env.shape[1], [max(1, s // 10) for s in sizes])):
        if k == 2:
            sb = roundtrip(sb, SlidingBalance)
        ai, ra = sb.process(env[0, a:b], env[1, a:b])
        ais.append(ai)
        ras.append(ra)
    np.testing.assert_allclose(np.concatenate(ais), whole[0], rtol=1e-12)
    np.testing.assert_allclose(np.concatenate(ras), whole[1], rtol=1e-12)


def chain_outputs(chain: MultiChannelChain, x: np.ndarray, bounds, restore_at: int | None = None):
    envs, acts, qs, conds = [], [], [], []
    for k, (a, b) in enumerate(bounds):
        if restore_at is not None and k == restore_at:
            chain = MultiChannelChain.from_state(json.loads(json.dumps(chain.to_state())))
        o = chain.process(x[:, a:b])
        envs.append(o.envelope_uv)
        acts += o.activations
        qs += o.quality
        conds.append(o.conditioned_uv)
    acts += chain.flush()
    return np.concatenate(envs, -1), acts, qs, np.concatenate(conds, -1)


@HYP
@given(partitions)
def test_multichannel_chain_framing_and_state(sizes: list[int]) -> None:
    cfg = ChainConfig(fs_hz=FS, n_channels=2, mains_hz=50.0, quality_window_s=0.5, stim_slope_uv=5000.0,
                      full_scale_uv=(0.0, 4095.0), keep_conditioned=True, min_on_s=0.05, min_off_s=0.05)
    whole = MultiChannelChain(cfg)
    whole.set_baselines([40.0, 40.0])
    e0, a0, q0, c0 = chain_outputs(whole, SIG, [(0, N)])
    ch = MultiChannelChain(cfg)
    ch.set_baselines([40.0, 40.0])
    e1, a1, q1, c1 = chain_outputs(ch, SIG, cut(N, sizes), restore_at=4)
    assert rel_err(e1, e0) < 1e-9 and rel_err(c1, c0) < 1e-9
    assert a1 == a0 and len(a0) == 2
    assert len(q1) == len(q0) == N // 500
    for w1, w0 in zip(q1, q0):
        for i in range(2):
            d1, d0 = w1.channel_dict(i), w0.channel_dict(i)
            for key in d0:
                assert d1[key] == pytest.approx(d0[key], rel=1e-9, abs=1e-12), key


def test_chain_60hz_sos_notch_framing_and_single_channel() -> None:
    cfg = ChainConfig(fs_hz=FS, n_channels=1, mains_hz=60.0, keep_conditioned=True)
    e0, _, _, c0 = chain_outputs(ChannelChain(cfg), SIG[:1], [(0, N)])
    e1, _, _, c1 = chain_outputs(ChannelChain(cfg), SIG[:1], cut(N, [100, 33, 1, 250]), restore_at=5)
    assert rel_err(e1, e0) < 1e-9 and rel_err(c1, c0) < 1e-9


def test_kernel_equals_public_sosfilt() -> None:
    sos = design_bandpass(2000.0)
    x = RNG.normal(size=(3, 5000))
    zi = np.zeros((3, sos.shape[0], 2))
    ours = np.concatenate([sosfilt_stateful(sos, x[:, :1234], zi), sosfilt_stateful(sos, x[:, 1234:], zi)], -1)
    np.testing.assert_allclose(ours, ss.sosfilt(sos, x, axis=-1), rtol=0, atol=1e-12)


def test_chain_state_bytes_round_trip_mid_stream() -> None:
    cfg = ChainConfig(fs_hz=2000.0, n_channels=4, mains_hz=50.0, keep_conditioned=True, min_on_s=0.05)
    rng = np.random.default_rng(3)
    x = np.vstack([burst_signal(2000.0, 3.0, [(1.0, 2.0, 100.0 + 20 * i)], 5.0, rng) for i in range(4)])
    ref = MultiChannelChain(cfg)
    ref.set_baselines([30.0] * 4)
    e0, a0, q0, c0 = chain_outputs(ref, x, [(0, 6000)])
    live = MultiChannelChain(cfg)
    live.set_baselines([30.0] * 4)
    envs, acts, qs = [], [], []
    for k, (a, b) in enumerate(cut(6000, [100])):  # 50 ms frames, restored from bytes every 7th frame
        if k % 7 == 3:
            blob = live.to_bytes()
            assert isinstance(blob, bytes) and len(blob) < 16_000
            live = MultiChannelChain.from_bytes(blob)
        o = live.process(x[:, a:b])
        envs.append(o.envelope_uv)
        acts += o.activations
        qs += o.quality
    acts += live.flush()
    assert np.array_equal(np.concatenate(envs, -1), e0)
    assert acts == a0 and len(a0) == 4 and len(qs) == len(q0) == 3

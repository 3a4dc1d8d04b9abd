"""The causal rest baseline: framing never changes the activations it arms, and the baseline is
the quietest full window so far."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st

from processors.dsp.chain import ChainConfig, MultiChannelChain
from processors.dsp.rest_baseline import MIN_REST_WINDOWS, RestBaseline, WindowSums, detect_causal

FS_HZ = 1000.0


def _emg(seed: int = 3) -> np.ndarray:
    """(2, 12 s) µV: 5 µV noise, bursts from 1.2 s on (inside the warm-up) and later ones."""
    rng = np.random.default_rng(seed)
    n = int(12 * FS_HZ)
    x = rng.normal(0.0, 5.0, size=(2, n))
    t = np.arange(n) / FS_HZ
    for a, b in [(1.2, 1.8), (4.0, 4.7), (6.1, 6.4), (8.0, 9.5), (11.6, 12.5)]:
        x[:, (t >= a) & (t < b)] *= np.array([[12.0], [4.0]])
    return x


def _run(x: np.ndarray, cuts: list[int]) -> tuple[list, RestBaseline]:
    chain = MultiChannelChain(ChainConfig(fs_hz=FS_HZ, n_channels=2, hop_s=0.025))
    rest, window, acts, at = RestBaseline(), WindowSums(), [], 0
    for cut in sorted(set(cuts)) + [x.shape[1]]:
        if cut <= at:
            continue
        out = chain.process(x[:, at:cut], detect=False)
        assert chain.undetected == out.envelope_uv.shape[1]
        got, _closed = detect_causal(chain, rest, window, out.envelope_uv, out.envelope_times_s)
        assert chain.undetected == 0
        acts += got
        at = cut
    return acts + chain.flush(), rest


def test_detection_starts_after_the_warm_up_and_finds_the_later_bursts() -> None:
    acts, rest = _run(_emg(), [])
    assert rest.windows_seen >= MIN_REST_WINDOWS and rest.ready(2)
    for ch in (0, 1):
        on = sorted(a.onset_s for a in acts if a.channel == ch)
        assert all(t > MIN_REST_WINDOWS for t in on)  # nothing from the warm-up (the 1.2 s burst)
        assert len(on) == 4 and all(abs(o - w) < 0.03 for o, w in zip(on, [4.0, 6.1, 8.0, 11.6])), on
    assert rest.mean is not None and all(4.0 < m < 6.0 for m in rest.mean)


@settings(max_examples=15, deadline=None)
@given(cuts=st.lists(st.integers(1, 11_999), max_size=8))
def test_any_framing_gives_the_same_activations(cuts: list[int]) -> None:
    x = _emg()
    whole, rest_whole = _run(x, [])
    framed, rest_framed = _run(x, cuts)
    def key(a):
        return a.channel, a.onset_index

    assert sorted(framed, key=key) == sorted(whole, key=key)  # the order across channels follows the frames
    assert rest_framed == rest_whole

"""The streaming spectral windows equal `frequency_track` over the whole signal, whatever the
framing, across state save/restore, with bounded state."""

from __future__ import annotations

import msgspec
import pytest
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.dsp.fatigue import frequency_track
from processors.dsp.spectral_stream import SpectralTracker

FS_HZ = 2000.0


def _signal(seed: int, n_channels: int = 3, seconds: float = 4.3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_channels, int(seconds * FS_HZ))) * 40.0
    # one channel's spectrum moves down (a chirp-like shift), one stays silent
    t = np.arange(x.shape[1]) / FS_HZ
    x[0] += 80.0 * np.sin(2 * np.pi * (150.0 * t - 8.0 * t * t))
    x[-1] = 0.0
    return x.astype(np.float32).astype(np.float64)  # the tracker's own input precision


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(1, 700), min_size=1, max_size=60), st.integers(0, 3))
def test_streaming_equals_offline_track(sizes: list[int], seed: int) -> None:
    x = _signal(seed)
    want = frequency_track(x, FS_HZ)
    tracker = SpectralTracker(FS_HZ, x.shape[0])
    got, i, k = [], 0, 0
    while i < x.shape[1]:
        n = sizes[k % len(sizes)]
        got += tracker.feed(x[:, i:i + n])
        i, k = i + n, k + 1
        if k % 3 == 0:  # through the state's wire form, mid-stream
            tracker = SpectralTracker.from_state(msgspec.msgpack.decode(msgspec.msgpack.encode(tracker.to_state())))
    assert [w.index for w in got] == list(range(want.times_s.size))
    np.testing.assert_allclose([w.centre_s for w in got], want.times_s, atol=1e-12)
    med = np.array([w.median_hz for w in got]).T
    mean = np.array([w.mean_hz for w in got]).T
    np.testing.assert_allclose(med[:-1], want.median_hz[:-1], atol=1e-6)
    np.testing.assert_allclose(mean[:-1], want.mean_hz[:-1], atol=1e-6)
    assert np.isnan(med[-1]).all() and np.isnan(want.median_hz[-1]).all()  # silence: undefined, not 0


def test_state_is_bounded() -> None:
    tracker = SpectralTracker(FS_HZ, 8)
    rng = np.random.default_rng(0)
    sizes = []
    for _ in range(400):  # 10 s in 50 ms frames
        tracker.feed(rng.standard_normal((8, 100)))
        sizes.append(len(msgspec.msgpack.encode(tracker.to_state())))
        assert tracker.pending.shape[1] < tracker.seg_n and len(tracker.open) <= 2
    assert max(sizes) < 40_000


@pytest.mark.parametrize("fs_hz", [250.0, 1000.0, 1003.0, 10_000.0])
def test_every_wire_rate_gives_windows(fs_hz: float) -> None:
    """Any rate the wire admits (250-10000 Hz) works: windows of ~1 s every ~0.5 s, in band."""
    rng = np.random.default_rng(1)
    tracker = SpectralTracker(fs_hz, 2)
    got = []
    for _ in range(30):
        got += tracker.feed(rng.standard_normal((2, int(fs_hz // 10))))
    assert len(got) >= 4
    assert all(abs(w.end_s - w.start_s - 1.0) < 0.02 for w in got)
    assert all(abs(b.start_s - a.start_s - 0.5) < 0.01 for a, b in zip(got, got[1:]))
    assert all(20.0 <= m <= min(450.0, fs_hz / 2) for w in got for m in w.median_hz)

"""Biphasic stimulation pulses are removed by shape; EMG alone is left untouched."""

import numpy as np
from scipy.signal import butter, sosfilt

from processors.dsp.stim_pulses import remove_biphasic_pulses


def _emg(n: int, rms_uv: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    sos = butter(4, [20, 450], btype="bandpass", fs=2000, output="sos")
    x = sosfilt(sos, rng.standard_normal((2, n)), axis=-1)
    return x / x.std() * rms_uv


def test_pulses_comparable_to_the_emg_are_removed() -> None:
    emg = _emg(4000, 30.0, 1)
    x = emg.copy()
    starts = np.arange(50, 3950, 100)  # 20 Hz stimulation
    for i in starts:
        x[:, i] += 150.0
        x[:, i + 1] -= 150.0
    y, n = remove_biphasic_pulses(x)
    assert n >= 0.95 * 2 * len(starts)
    # the residual error is a small interpolation error, far below the pulse energy
    assert np.sqrt(np.mean((y - emg) ** 2)) < 0.25 * np.sqrt(np.mean((x - emg) ** 2))


def test_plain_emg_is_not_touched() -> None:
    for seed in range(5):
        emg = _emg(20000, 200.0, seed)  # a strong contraction
        y, n = remove_biphasic_pulses(emg)
        # 450 Hz EMG can alternate that fast now and then: a few 2-sample touches in 10 s
        assert n <= 20
        assert np.sqrt(np.mean((y - emg) ** 2)) < 0.01 * 200.0  # amplitude unaffected


def test_a_pulse_at_the_start_of_a_frame_is_caught_with_the_previous_sample() -> None:
    emg = _emg(200, 5.0, 3)
    x = emg.copy()
    x[:, 100] += 225.0  # the pulse opens the second 100-sample frame
    x[:, 101] -= 221.0
    first, _ = remove_biphasic_pulses(x[:, :100])
    second, n = remove_biphasic_pulses(x[:, 100:], prev_uv=first[:, -1])
    assert n == 2
    assert np.abs(second[:, :2] - emg[:, 100:102]).max() < 20.0

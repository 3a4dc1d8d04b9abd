"""Synthetic sEMG with known truth, for the DSP tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.signal as ss

# Real recordings kept in the repository (provenance and licences in its README.md).
DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "emg"


def real_files() -> list[Path]:
    return sorted(p for p in DATA_DIR.glob("*/*.txt"))


def emg_noise(n: int, fs_hz: float, rng: np.random.Generator, band_hz: tuple[float, float] = (30.0, 250.0)) -> np.ndarray:
    """Unit-RMS band-limited Gaussian noise: the classic sEMG model."""
    sos = ss.butter(4, band_hz, btype="bandpass", fs=fs_hz, output="sos")
    x = ss.sosfilt(sos, rng.normal(size=n + 2000))[2000:]
    return x / x.std()


def burst_signal(fs_hz: float, duration_s: float, bursts: list[tuple[float, float, float]], rest_uv: float,
                 rng: np.random.Generator, mains: tuple[float, float] | None = None) -> np.ndarray:
    """EMG whose RMS is `rest_uv` at rest and `amp_uv` inside each (onset_s, offset_s, amp_uv) burst."""
    n = int(round(duration_s * fs_hz))
    amp = np.full(n, float(rest_uv))
    t = np.arange(n) / fs_hz
    for on, off, a in bursts:
        amp[(t >= on) & (t < off)] = a
    x = emg_noise(n, fs_hz, rng) * amp
    if mains:
        f, a = mains
        x = x + a * np.sin(2 * np.pi * f * t + 0.3)
    return x

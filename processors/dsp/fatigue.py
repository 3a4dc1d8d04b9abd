"""Fatigue: median and mean frequency (Welch) per window, and their slope over a
sustained contraction (muscle fatigue lowers conduction velocity, so the
spectrum shifts down: a negative slope)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from processors.dsp.spectrum import median_mean_frequency, welch_psd


@dataclass(frozen=True)
class FrequencyTrack:
    times_s: np.ndarray  # window centres
    median_hz: np.ndarray  # (n_channels, n_windows)
    mean_hz: np.ndarray


def frequency_track(x: np.ndarray, fs_hz: float, window_s: float = 1.0, hop_s: float = 0.5,
                    segment_s: float = 0.25, band_hz: tuple[float, float] = (20.0, 450.0)) -> FrequencyTrack:
    """Median/mean frequency of each `window_s` window (Welch with `segment_s` segments) of a conditioned signal."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    win, hop = int(round(window_s * fs_hz)), max(1, int(round(hop_s * fs_hz)))
    starts = np.arange(0, max(0, x.shape[-1] - win) + 1, hop) if x.shape[-1] >= win else np.array([], dtype=int)
    med = np.full((x.shape[0], starts.size), np.nan)
    mean = np.full_like(med, np.nan)
    for j, s in enumerate(starts):
        f, p = welch_psd(x[:, s:s + win], fs_hz, segment_s)
        med[:, j], mean[:, j] = median_mean_frequency(f, p, band_hz)
    return FrequencyTrack((starts + win / 2) / fs_hz, med, mean)


@dataclass(frozen=True)
class FatigueSlope:
    slope_hz_per_s: float  # NaN with fewer than 3 valid windows
    intercept_hz: float
    relative_per_min: float  # slope / initial value, fraction per minute


def fatigue_slope(times_s: np.ndarray, freq_hz: np.ndarray) -> FatigueSlope:
    """Least-squares line through (time, frequency), ignoring NaN windows."""
    t, f = np.asarray(times_s, dtype=np.float64), np.asarray(freq_hz, dtype=np.float64)
    ok = np.isfinite(t) & np.isfinite(f)
    if ok.sum() < 3:
        return FatigueSlope(np.nan, np.nan, np.nan)
    slope, icpt = np.polyfit(t[ok], f[ok], 1)
    start = icpt + slope * t[ok][0]
    return FatigueSlope(float(slope), float(icpt), float(slope * 60.0 / start) if start else np.nan)

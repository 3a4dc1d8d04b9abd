"""Fatigue during a sustained contraction: the EMG spectrum shifts down as
conduction velocity falls, so median and mean frequency decrease over time.

  median frequency  f_med: the frequency splitting the in-band (20-450 Hz) power
                    of a window's Welch PSD in half (linearly interpolated), Hz
  mean frequency    f_mean = sum(f P(f)) / sum(P(f)) over the band, Hz
  slope             least-squares slope of f_med (or f_mean) against the window
                    centres' times, over the windows lying wholly inside one
                    sustained contraction, Hz/s; negative = fatiguing. Also
                    relative: slope / initial value, per minute.
  per activation    (`activation_fatigue`) an activation lasting at least
                    `min_duration_s` (MIMETIC_FATIGUE_MIN_S, default 3 s) with
                    at least `MIN_WINDOWS` windows inside [onset, offset]: the
                    mean f_med and f_mean of those windows and both slopes;
                    shorter activations have none (null, never 0).
  per session       (`session_fatigue_slope`) per muscle and side, the mean of
                    its sustained activations' median-frequency slopes (each
                    contraction weighs the same: the clinical question is how
                    a typical held contraction fatigues, not the longest one).

Choice: 1 s windows, 0.5 s hop, Welch with 0.25 s Hann segments (4 Hz
resolution) on the conditioned (band-passed, notched) signal, windows aligned
to the stream start; the worker computes them as the frames stream
(`processors.dsp.spectral_stream`, equal to `frequency_track`) and fits each
activation when it closes; the session statistics are the database's
(`app.refresh_session_fatigue`, the same mean). References: Merletti,
Knaflitz & De Luca 1990, J Appl Physiol 69:1810 (myoelectric manifestations
of fatigue); De Luca 1997, J Appl Biomech 13:135 (median frequency and its
slope as the fatigue index).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from processors.dsp.fatigue import FatigueSlope, FrequencyTrack, fatigue_slope, frequency_track
from processors.dsp.spectrum import median_mean_frequency, welch_psd

MIN_SUSTAINED_S = 3.0  # default shortest sustained contraction (MIMETIC_FATIGUE_MIN_S)
MIN_WINDOWS = 3  # windows for a slope: 3 windows of 1 s at 0.5 s hop span 2 s


@dataclass(frozen=True)
class ActivationFatigue:
    """Spectral fatigue of one sustained activation (Hz, Hz/s)."""

    median_freq_hz: float
    mean_freq_hz: float
    median_freq_slope_hz_s: float
    mean_freq_slope_hz_s: float
    windows: int


def activation_fatigue(start_s: np.ndarray, end_s: np.ndarray, median_hz: np.ndarray, mean_hz: np.ndarray,
                       onset_s: float, offset_s: float, min_duration_s: float = MIN_SUSTAINED_S
                       ) -> ActivationFatigue | None:
    """The fatigue of the activation [onset_s, offset_s) from its channel's windows (start, end, f_med,
    f_mean per window, any order): None when it is shorter than `min_duration_s` or fewer than
    `MIN_WINDOWS` valid windows lie wholly inside it."""
    if not offset_s - onset_s >= min_duration_s:
        return None
    t0, t1 = np.asarray(start_s, dtype=np.float64), np.asarray(end_s, dtype=np.float64)
    med, mean = np.asarray(median_hz, dtype=np.float64), np.asarray(mean_hz, dtype=np.float64)
    inside = (t0 >= onset_s) & (t1 <= offset_s) & np.isfinite(med) & np.isfinite(mean)
    if inside.sum() < MIN_WINDOWS:
        return None
    t = 0.5 * (t0[inside] + t1[inside])
    s_med, s_mean = fatigue_slope(t, med[inside]), fatigue_slope(t, mean[inside])
    if not (math.isfinite(s_med.slope_hz_per_s) and math.isfinite(s_mean.slope_hz_per_s)):
        return None
    return ActivationFatigue(float(med[inside].mean()), float(mean[inside].mean()), s_med.slope_hz_per_s,
                             s_mean.slope_hz_per_s, int(inside.sum()))


def session_fatigue_slope(slopes_hz_s: list[float | None]) -> float | None:
    """A muscle side's session fatigue: the mean of its sustained activations' slopes (None if none)."""
    v = [s for s in slopes_hz_s if s is not None and math.isfinite(s)]
    return float(np.mean(v)) if v else None


__all__ = ["ActivationFatigue", "FatigueSlope", "FrequencyTrack", "MIN_SUSTAINED_S", "MIN_WINDOWS",
           "activation_fatigue", "fatigue_slope", "frequency_track", "median_mean_frequency",
           "session_fatigue_slope", "welch_psd"]

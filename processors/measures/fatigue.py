"""Fatigue during a sustained contraction: the EMG spectrum shifts down as
conduction velocity falls, so median and mean frequency decrease over time.

  median frequency  f_med: the frequency splitting the in-band (20-450 Hz) power
                    of a window's Welch PSD in half (linearly interpolated), Hz
  mean frequency    f_mean = sum(f P(f)) / sum(P(f)) over the band, Hz
  slope             least-squares slope of f_med (or f_mean) against time over
                    the windows of one sustained contraction, Hz/s; negative =
                    fatiguing. Also relative: slope / initial value, per minute.

Choice: 1 s windows, 0.5 s hop, Welch with 0.25 s Hann segments (4 Hz
resolution) on the conditioned signal; at least 3 windows (a 2 s contraction)
for a slope. Reference: Merletti, Knaflitz & De Luca 1990, J Appl Physiol
69:1810 (myoelectric manifestations of fatigue); De Luca 1997, J Appl Biomech
13:135. The computations live in `processors.dsp.spectrum` (shared with the
signal quality checks) and `processors.dsp.fatigue`; this module is their
definition's home and the name the rest of the code imports.
"""

from __future__ import annotations

from processors.dsp.fatigue import FatigueSlope, FrequencyTrack, fatigue_slope, frequency_track
from processors.dsp.spectrum import median_mean_frequency, welch_psd

MIN_SUSTAINED_S = 2.0  # shortest contraction with >= 3 windows of 1 s at 0.5 s hop

__all__ = ["FatigueSlope", "FrequencyTrack", "fatigue_slope", "frequency_track", "median_mean_frequency",
           "welch_psd", "MIN_SUSTAINED_S"]

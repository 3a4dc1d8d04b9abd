"""Welch spectra and the spectral statistics shared by quality and fatigue."""

from __future__ import annotations

import numpy as np
import scipy.signal as ss


def welch_psd(x: np.ndarray, fs_hz: float, segment_s: float = 1.0, average: str = "mean") -> tuple[np.ndarray, np.ndarray]:
    """Welch PSD along the last axis (Hann, 50 % overlap, segment clipped to the signal length);
    `average="median"` is robust to bursts (for line detection)."""
    x = np.asarray(x, dtype=np.float64)
    nper = int(max(8, min(x.shape[-1], round(segment_s * fs_hz))))
    return ss.welch(x, fs=fs_hz, nperseg=nper, axis=-1, detrend="constant", average=average)


def band_power(freqs: np.ndarray, psd: np.ndarray, lo_hz: float, hi_hz: float) -> np.ndarray:
    m = (freqs >= lo_hz) & (freqs < hi_hz)
    return psd[..., m].sum(axis=-1) * (freqs[1] - freqs[0] if freqs.size > 1 else 1.0)


def median_mean_frequency(freqs: np.ndarray, psd: np.ndarray, band_hz: tuple[float, float] = (20.0, 450.0)
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Median frequency (splits the in-band power in half, linearly interpolated) and
    mean frequency (power-weighted) of PSD rows; NaN where the band holds no power."""
    m = (freqs >= band_hz[0]) & (freqs <= band_hz[1])
    f, p = freqs[m], np.atleast_2d(psd)[..., m]
    total = p.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_f = (p * f).sum(axis=-1) / total
        cum = np.cumsum(p, axis=-1)
        med = np.full(total.shape, np.nan)
        for i in np.ndindex(total.shape):
            if not total[i] > 0:
                mean_f[i] = np.nan
                continue
            c = cum[i] / total[i]
            j = int(np.searchsorted(c, 0.5))
            if j == 0:
                med[i] = f[0]
            else:
                c0, c1 = c[j - 1], c[j]
                med[i] = f[j - 1] + (0.5 - c0) / (c1 - c0) * (f[j] - f[j - 1]) if c1 > c0 else f[j]
    return med, mean_f

"""Signal quality per channel and window; these feed the device-fault alerts.

Two levels:
* `channel_quality(...)`: full metrics of a window (offline, or a worker's 1-10 s
  window): noise floor at rest, SNR, mains line/power ratio, clipping, flat line /
  electrode off, motion-artefact power below 20 Hz, stimulation pulses.
* `QualityWindow` (chain.py): cheap statistics the streaming chain accumulates per
  aligned window (RMS, SD, mains power ratio, < ~20 Hz power ratio, flat line,
  clipping, electrode off).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from processors.dsp.activation import estimate_baseline
from processors.dsp.filters import mains_harmonics_hz
from processors.dsp.spectrum import welch_psd

ELECTRODE_OFF_RMS_UV = 0.05  # below this the input is effectively constant


def line_ratio(freqs: np.ndarray, psd: np.ndarray, f0: float, half_bw_hz: float = 1.0,
               neighbours_hz: float = 6.0) -> float:
    """PSD peak within +-half_bw of f0 divided by the median PSD of the neighbouring bins."""
    near = np.abs(freqs - f0)
    line = near <= half_bw_hz
    ring = (near > half_bw_hz + 0.5) & (near <= neighbours_hz)
    if not line.any() or not ring.any():
        return float("nan")
    ref = float(np.median(psd[ring]))
    return float(psd[line].max() / ref) if ref > 0 else float("inf") if psd[line].max() > 0 else float("nan")


def detect_mains(x: np.ndarray, fs_hz: float, min_ratio: float = 6.0) -> float | None:
    """50 or 60 Hz, whichever has the stronger lines (first 3 harmonics), or None if
    neither stands `min_ratio` above its neighbours in any channel. The PSD is the
    median over 1 s segments, so EMG bursts do not bury a hum that is plain at rest."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    if x.shape[-1] < fs_hz / 2:
        return None
    f, p = welch_psd(x - x.mean(axis=-1, keepdims=True), fs_hz, 1.0, average="median")
    best: tuple[float, float | None] = (min_ratio, None)
    for mains in (50.0, 60.0):
        for row in np.atleast_2d(p):
            score = max((line_ratio(f, row, h) for h in mains_harmonics_hz(fs_hz, mains)[:3]), default=0.0)
            if np.isfinite(score) and score > best[0]:
                best = (score, mains)
    return best[1]


def mains_power_ratio(freqs: np.ndarray, psd: np.ndarray, mains_hz: float, half_bw_hz: float = 1.0) -> float:
    """Excess power in the mains lines (above the local floor) / total power above 1 Hz."""
    total = psd[freqs >= 1.0].sum()
    if total <= 0:
        return 0.0
    excess = 0.0
    for h in mains_harmonics_hz(freqs[-1] * 2, mains_hz):
        near = np.abs(freqs - h)
        line, ring = near <= half_bw_hz, (near > half_bw_hz + 0.5) & (near <= 6.0)
        if line.any() and ring.any():
            excess += max(0.0, float(psd[line].sum() - np.median(psd[ring]) * line.sum()))
    return float(excess / total)


def run_lengths(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start indices and lengths of the True runs of a 1-D mask."""
    m = np.concatenate([[False], np.asarray(mask, dtype=bool), [False]])
    d = np.diff(m.astype(np.int8))
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    return starts, ends - starts


def flat_fraction(x: np.ndarray, fs_hz: float, min_run_s: float = 0.05) -> float:
    """Fraction of samples lying in runs of identical values at least `min_run_s` long."""
    x = np.asarray(x).reshape(-1)
    if x.size < 2:
        return 1.0 if x.size else 0.0
    same = np.concatenate([[False], x[1:] == x[:-1]])
    starts, lens = run_lengths(same)
    need = max(1, int(round(min_run_s * fs_hz)))
    return float((lens[lens >= need] + 1).sum() / x.size)


def clipping_fraction(x: np.ndarray, full_scale: tuple[float, float] | None = None, min_run: int = 3) -> float:
    """Fraction of samples at the rail. With a known ADC range `full_scale` (lo, hi):
    samples within 0.1 % of it. Without: samples equal to the window's min or max
    that sit in runs of >= `min_run` identical values (flat tops)."""
    x = np.asarray(x).reshape(-1)
    if x.size == 0:
        return 0.0
    if full_scale is not None:
        lo, hi = full_scale
        tol = 1e-3 * (hi - lo)
        return float(((x <= lo + tol) | (x >= hi - tol)).mean())
    lo, hi = x.min(), x.max()
    if hi == lo:
        return 0.0  # a flat line is reported by flat_fraction, not as clipping
    rail = (x == lo) | (x == hi)
    starts, lens = run_lengths(rail & np.concatenate([[False], x[1:] == x[:-1]]))
    return float((lens[lens >= min_run - 1] + 1).sum() / x.size)


def detect_stim_pulses(x: np.ndarray, fs_hz: float, k: float = 12.0, min_step_uv: float = 500.0,
                       k_local: float = 8.0, width_s: float = 0.003, block_s: float = 0.2,
                       context_s: float = 0.025) -> np.ndarray:
    """Indices where a microcurrent stimulation pulse starts.

    A pulse is a spike: a step above max(k x the block's robust SD of steps,
    `min_step_uv`) that returns to within 30 % of the pre-pulse level within
    `width_s`, and stands `k_local` times above the RMS of the steps around it.
    Stimulation edges (10-600 µA through kΩ skin: mV to V) pass all three; EMG
    bursts and movement steps fail the return or the context test. Use
    `min_step_uv=0` for uncalibrated (ADC-count) signals.
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if x.size < 3:
        return np.zeros(0, dtype=np.int64)
    d = np.abs(np.diff(x))
    blk = max(8, int(round(block_s * fs_hz)))
    nb = int(np.ceil(d.size / blk))
    pad = np.full(nb * blk, np.nan)
    pad[: d.size] = d
    sd = np.nanmedian(pad.reshape(nb, blk), axis=1) / 0.6745
    sd = np.maximum(sd, np.nanmedian(sd) * 0.25 + 1e-12)
    thr = np.maximum(np.repeat(sd * k, blk)[: d.size], min_step_uv)
    cand = np.flatnonzero(d > thr) + 1
    w = max(1, int(round(width_s * fs_hz)))
    c = max(4, int(round(context_s * fs_hz)))
    out: list[int] = []
    for i in cand.tolist():
        if out and i - out[-1] <= w:
            continue
        pre, h = x[i - 1], abs(x[i] - x[i - 1])
        after = x[i + 1:i + 1 + w]
        if not (after.size and np.any(np.abs(after - pre) < 0.3 * h)):
            continue
        ctx = np.concatenate([d[max(0, i - 1 - c):max(0, i - 2)], d[i + w + 1:i + w + 1 + c]])
        if ctx.size == 0 or h > k_local * np.sqrt(np.mean(ctx * ctx)):
            out.append(i)
    return np.asarray(out, dtype=np.int64)


def blank_pulses(x: np.ndarray, pulses: np.ndarray, fs_hz: float, blank_s: float = 0.004) -> tuple[np.ndarray, np.ndarray]:
    """Hold the last good value over `blank_s` from each pulse start; returns (signal, blanked mask)."""
    x = np.asarray(x, dtype=np.float64).reshape(-1).copy()
    mask = np.zeros(x.size, dtype=bool)
    n = max(1, int(round(blank_s * fs_hz)))
    for p in np.asarray(pulses, dtype=np.int64):
        mask[max(0, p - 1): p + n] = True
    idx = np.where(mask, -1, np.arange(x.size))
    last = np.maximum.accumulate(idx)
    x = np.where(last >= 0, x[np.maximum(last, 0)], 0.0)
    return x, mask


def channel_quality(raw: np.ndarray, conditioned: np.ndarray, envelope: np.ndarray, fs_hz: float,
                    envelope_fs_hz: float, mains_hz: float | None = 50.0,
                    full_scale: tuple[float, float] | None = None, calibrated: bool = True) -> dict[str, Any]:
    """All quality metrics of one channel window.

    raw: the input (source units, offset included) - for flat line, clipping,
      spectra (motion < 20 Hz, mains);
    conditioned / envelope: after the chain - for noise floor and SNR.
    """
    raw = np.asarray(raw, dtype=np.float64).reshape(-1)
    centred = raw - raw.mean() if raw.size else raw
    out: dict[str, Any] = {}
    base = estimate_baseline(envelope, envelope_fs_hz)
    noise = base.mean
    active = float(np.percentile(envelope, 95)) if np.size(envelope) else 0.0
    out["noise_floor_uv"] = noise
    out["snr_db"] = float(20 * np.log10(active / noise)) if noise > 0 and active > 0 else None
    out["rms_uv"] = float(np.sqrt(np.mean(np.square(conditioned)))) if np.size(conditioned) else 0.0
    if raw.size >= 16:
        f, p = welch_psd(centred, fs_hz, 1.0)
        total = p[f >= 1.0].sum()
        out["motion_power_ratio"] = float(p[(f >= 1.0) & (f < 20.0)].sum() / total) if total > 0 else 0.0
        out["above_450hz_power_ratio"] = float(p[f > 450.0].sum() / total) if total > 0 else 0.0
        fm, pm = welch_psd(centred, fs_hz, 1.0, average="median")
        lines = {m: line_ratio(fm, pm, m) for m in (50.0, 60.0)}
        out["mains_line_ratio"] = {str(int(k)): (None if not np.isfinite(v) else float(v)) for k, v in lines.items()}
        out["mains_power_ratio"] = mains_power_ratio(f, p, mains_hz) if mains_hz else None
    else:
        out.update(motion_power_ratio=None, above_450hz_power_ratio=None, mains_line_ratio=None, mains_power_ratio=None)
    out["clipping_fraction"] = clipping_fraction(raw, full_scale)
    ff = flat_fraction(raw, fs_hz)
    out["flat_fraction"] = ff
    sd = float(centred.std()) if raw.size else 0.0
    out["electrode_off"] = bool(ff > 0.5 or sd < ELECTRODE_OFF_RMS_UV)
    pulses = detect_stim_pulses(raw, fs_hz, min_step_uv=500.0 if calibrated else 0.0)
    out["stim_pulses"] = int(pulses.size)
    out["stim_pulse_rate_hz"] = float(pulses.size / (raw.size / fs_hz)) if raw.size else 0.0
    return out

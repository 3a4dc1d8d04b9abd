"""The simulator's fatigue model: the EMG spectrum compresses during a sustained contraction.

Model, per channel c (unit-variance EMG e(t) of `ingest.simulator`):

    e(t) = sqrt(1 - w(t)) * e1(t) + sqrt(w(t)) * e2(t)

e1 is the fresh muscle's EMG (Gaussian noise band-passed 50-180 Hz, the
simulator's stream), e2 independent noise band-passed over the same band
compressed by `COMPRESSION` (35-126 Hz): the spectrum of a muscle whose
conduction velocity has fallen by 30 %. e1 and e2 are independent with unit
variance, so e keeps unit variance (the amplitude model, hence every balance
measure and its truth, is unchanged) while its spectrum, (1 - w) S1 + w S2,
shifts down as w grows. The fatigue weight rises linearly through each
contraction of the channel (its own task, the calibration, or injected
synkinesis), from the contraction's onset to its end:

    w(t) = min(W_MAX, rate_c * effort * (t - onset)),   0 outside contractions

(full recovery during the rest between contractions: a simplification),
rate_c = the patient's rate (0.04-0.08 per second at full effort) times
0.9-1.1 per channel. With w = 0 the output is e1 exactly: outside
contractions the signal is what it was without this model.

Truth: the Welch spectrum of a window of x = env * e is, in expectation,
sum(env^2 [(1 - w) S1 + w S2]) / sum(env^2) over its samples: the model's PSD
with the window's envelope-weighted fatigue weight. `contraction_truth` takes
that PSD on the Welch frequency grid for every 1 s window (0.5 s hop) of a
contraction's plateau and applies the shared definitions
(`processors.measures.fatigue`: median / mean frequency of a PSD, least-squares
slope): the truth the pipeline's per-activation values are compared with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import signal as sps

from processors.measures.fatigue import fatigue_slope, median_mean_frequency

COMPRESSION = 0.7
W_MAX = 0.9
RATE_PER_S = (0.04, 0.08)
WINDOW_S, HOP_S, SEGMENT_S = 1.0, 0.5, 0.25  # the definition's windows (processors.measures.fatigue)
BAND_HZ = (20.0, 450.0)


def _band_sos(fs_hz: float, band_hz: tuple[float, float]) -> tuple[np.ndarray, float]:
    """Butterworth band-pass (2 sections) and the gain giving its white-noise output unit variance."""
    sos = sps.butter(2, list(band_hz), btype="bandpass", fs=fs_hz, output="sos")
    imp = np.zeros(int(fs_hz * 2))
    imp[0] = 1.0
    return sos, 1.0 / math.sqrt(float(np.sum(sps.sosfilt(sos, imp) ** 2)))


@dataclass(frozen=True)
class Contraction:
    """One contraction of one channel: [onset_s, end_s) in session seconds, its effort."""

    channel: int
    task: str
    repetition: int
    onset_s: float
    end_s: float
    effort: float


class FatigueModel:
    """Mixes a fatigued EMG stream into the fresh one, frame by frame (streaming filter state)."""

    def __init__(self, fs_hz: float, base_band_hz: tuple[float, float], contractions: list[Contraction],
                 rate_per_s: np.ndarray, rng: np.random.Generator):
        self.fs_hz = float(fs_hz)
        self.n_channels = int(rate_per_s.size)
        self.band1 = (float(base_band_hz[0]), float(base_band_hz[1]))
        self.band2 = (self.band1[0] * COMPRESSION, self.band1[1] * COMPRESSION)
        self.sos1, self.norm1 = _band_sos(self.fs_hz, self.band1)
        self.sos2, self.norm2 = _band_sos(self.fs_hz, self.band2)
        self.zi = np.zeros((self.sos2.shape[0], self.n_channels, 2))
        self.contractions = contractions
        self.rate = np.asarray(rate_per_s, dtype=np.float64)
        self.rng = rng

    def weight(self, t: np.ndarray) -> np.ndarray:
        """w(t) per channel, shape (C, len(t))."""
        w = np.zeros((self.n_channels, t.size))
        lo, hi = float(t[0]), float(t[-1])
        for k in self.contractions:
            if k.end_s < lo or k.onset_s > hi:
                continue
            inside = (t >= k.onset_s) & (t < k.end_s)
            w[k.channel] = np.where(inside, np.minimum(W_MAX, self.rate[k.channel] * k.effort * (t - k.onset_s)),
                                    w[k.channel])
        return w

    def apply(self, emg: np.ndarray, t: np.ndarray) -> np.ndarray:
        """The fresh EMG block (C, n) at times t with the fatigued stream mixed in."""
        e2, self.zi = sps.sosfilt(self.sos2, self.rng.standard_normal(emg.shape), axis=-1, zi=self.zi)
        w = self.weight(t)
        if not w.any():
            return emg
        return np.sqrt(1.0 - w) * emg + np.sqrt(w) * (e2 * self.norm2)

    def psd(self, w: float, freqs_hz: np.ndarray) -> np.ndarray:
        """The model's PSD (up to a constant) at fatigue weight w."""
        _f, h1 = sps.sosfreqz(self.sos1, worN=freqs_hz, fs=self.fs_hz)
        _f, h2 = sps.sosfreqz(self.sos2, worN=freqs_hz, fs=self.fs_hz)
        return (1.0 - w) * np.abs(h1 * self.norm1) ** 2 + w * np.abs(h2 * self.norm2) ** 2

    def contraction_truth(self, k: Contraction, envelope: Any, start_s: float, end_s: float
                          ) -> dict[str, Any] | None:
        """Median / mean frequency and their slopes over the 1 s windows (0.5 s hop) tiling
        [start_s, end_s], by the shared definitions; `envelope(t)` gives the channel's clean amplitude."""
        seg_n = int(round(SEGMENT_S * self.fs_hz))
        freqs = np.fft.rfftfreq(seg_n, 1.0 / self.fs_hz)
        times, meds, means = [], [], []
        t0 = start_s
        while t0 + WINDOW_S <= end_s + 1e-9:
            t = t0 + np.arange(int(round(WINDOW_S * self.fs_hz))) / self.fs_hz
            e2 = np.asarray(envelope(t), dtype=np.float64) ** 2
            w_bar = float(np.sum(e2 * self.weight(t)[k.channel]) / np.sum(e2))
            med, mean = median_mean_frequency(freqs, self.psd(w_bar, freqs), BAND_HZ)
            times.append(t0 + WINDOW_S / 2)
            meds.append(float(np.ravel(med)[0]))
            means.append(float(np.ravel(mean)[0]))
            t0 += HOP_S
        if len(times) < 3:
            return None
        s_med, s_mean = fatigue_slope(np.array(times), np.array(meds)), fatigue_slope(np.array(times), np.array(means))
        return {"channel": k.channel, "task": k.task, "repetition": k.repetition,
                "onset_s": round(start_s, 4), "offset_s": round(end_s, 4), "windows": len(times),
                "median_freq_hz": round(float(np.mean(meds)), 3), "mean_freq_hz": round(float(np.mean(means)), 3),
                "median_freq_slope_hz_s": round(s_med.slope_hz_per_s, 4),
                "mean_freq_slope_hz_s": round(s_mean.slope_hz_per_s, 4)}


def session_model(muscles: list[str], sides: list[Any], affected_side: Any, synkinesis_level: float,
                  windows: list[Any], own_task: dict[str, str], synkinesis_pairs: tuple[tuple[str, str], ...],
                  fs_hz: float, base_band_hz: tuple[float, float], seed: list[int], release_s: float = 0.3
                  ) -> FatigueModel:
    """The model of one session: a contraction per (task window, channel active in it) as in
    `SessionSynth.activation` (own task, calibration, synkinesis on the affected side), from the
    window's onset (start + latency) to the end of its release (stop + `release_s`)."""
    rng = np.random.default_rng(seed)
    rate = float(rng.uniform(*RATE_PER_S)) * rng.uniform(0.9, 1.1, len(muscles))
    ks: list[Contraction] = []
    for w in windows:
        if w.effort <= 0:
            continue
        for c, (m, s) in enumerate(zip(muscles, sides)):
            own = w.task == "mvc_calibration" or own_task.get(m) == w.task
            syn = (not own and s == affected_side and synkinesis_level > 0
                   and any(w.task == task and m == mus for task, mus in synkinesis_pairs))
            if own or syn:
                ks.append(Contraction(c, w.task, w.repetition, w.start_s + w.latency_s, w.stop_s + release_s,
                                      float(w.effort)))
    return FatigueModel(fs_hz, base_band_hz, ks, rate, rng)


def fatigue_truth(synth: Any, edge_s: float = 0.1) -> list[dict[str, Any]]:
    """Per contraction and channel of a `SessionSynth`: its fatigue by the shared definitions, over
    its plateau [onset + edge_s, end - edge_s] (the ramps' midpoints, where the pipeline's activation
    edges lie); contractions too short for 3 windows are left out."""
    out = []
    for k in synth.fatigue.contractions:
        def env(t: np.ndarray, c: int = k.channel) -> np.ndarray:
            return synth.envelope(t)[c]
        d = synth.fatigue.contraction_truth(k, env, k.onset_s + edge_s, k.end_s - edge_s)
        if d is not None:
            side = synth.sides[k.channel]
            out.append({**d, "muscle": synth.muscles[k.channel], "side": getattr(side, "value", side)})
    return out

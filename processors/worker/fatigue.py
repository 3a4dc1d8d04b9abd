"""The worker's fatigue part: spectral windows as frames stream, one fit per closing activation.

Fed the chain's conditioned signal, a `SpectralTracker` gives each channel's
median / mean frequency per 1 s window (0.5 s hop). Each channel keeps the
windows of its open activation in a bounded list; when the chain closes an
activation, `processors.measures.fatigue.activation_fatigue` fits it from the
windows wholly inside [onset, offset] (the one definition). Times are seconds
from the chain's first sample, the clock of the chain's activations; the part
restarts with the chain.

Bounds: a channel at rest keeps only the windows that may still belong to an
activation not yet detected (those ending in the last `IDLE_KEEP_S`); a channel
whose activation stays open longer than `MAX_WINDOWS` windows (~32 s) keeps
every second window of the oldest ones: the fit then uses unevenly spaced
windows (least squares allows it). The state is the tracker's (under one 0.25 s
segment of float32 samples per channel and two windows' power sums) and these
lists: bounded whatever a device sends.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from processors.dsp.activation import Activation
from processors.dsp.spectral_stream import SpectralTracker
from processors.measures.fatigue import MIN_SUSTAINED_S as DEFAULT_MIN_S, ActivationFatigue, activation_fatigue

IDLE_KEEP_S = 1.5  # a window starting earlier cannot lie inside an activation not yet opened
MAX_WINDOWS = 64
#: channels x rate beyond which a device gets no fatigue (its state would hold ~0.25 s of every
#: channel): 18 channels (9 facial muscle pairs) at 4 kHz, ~100 KB of state at most
MAX_SAMPLES_PER_S = 18 * 4000


class FatiguePart:
    """Per device: `feed` the conditioned signal after each frame, `fit` each closed activation."""

    def __init__(self, fs_hz: float, n_channels: int, min_duration_s: float, start_s: float = 0.0):
        self.min_duration_s = float(min_duration_s)
        #: the chain-clock time of the tracker's first sample (not 0 when made for a restored chain)
        self.start_s = float(start_s)
        #: None for a device beyond MAX_SAMPLES_PER_S: its activations carry no fatigue
        self.tracker = SpectralTracker(fs_hz, n_channels) if fs_hz * n_channels <= MAX_SAMPLES_PER_S else None
        #: per channel: [start_s, end_s, median_hz, mean_hz] of the windows kept
        self.windows: list[list[list[float]]] = [[] for _ in range(n_channels)] if self.tracker else []
        self._added = False  # windows added since the last `trim` (not state: `trim` is idempotent)

    def feed(self, conditioned_uv: np.ndarray) -> None:
        """Spectral windows of the new samples, added to every channel's list."""
        if self.tracker is None:
            return
        new = self.tracker.feed(conditioned_uv)
        self._added = self._added or bool(new)
        for w in new:
            t0, t1 = self.start_s + w.start_s, self.start_s + w.end_s
            for ch, kept in enumerate(self.windows):
                kept.append([t0, t1, float(w.median_hz[ch]), float(w.mean_hz[ch])])

    def fit(self, act: Activation) -> ActivationFatigue | None:
        """The fatigue of a closed activation (None when not sustained); its windows are let go."""
        kept = self.windows[act.channel] if act.channel < len(self.windows) else []
        if not kept:
            return None
        a = np.array(kept, dtype=np.float64)
        res = activation_fatigue(a[:, 0], a[:, 1], a[:, 2], a[:, 3], act.onset_s, act.offset_s,
                                 self.min_duration_s)
        self.windows[act.channel] = [w for w in kept if w[1] > act.offset_s]
        return res

    def trim(self, open_channels: list[bool]) -> None:
        """Bound the lists: channels at rest keep the last `IDLE_KEEP_S`; long ones are thinned."""
        t = self.tracker
        if t is None or not self._added:  # the lists change only when windows are added
            return
        self._added = False
        now_s = self.start_s + (t.next_seg * t.step_n + t.pending.shape[1]) / t.fs_hz
        for ch, kept in enumerate(self.windows):
            if not (ch < len(open_channels) and open_channels[ch]):
                self.windows[ch] = [w for w in kept if w[0] >= now_s - IDLE_KEEP_S]
            elif len(kept) > MAX_WINDOWS:
                half = len(kept) // 2
                self.windows[ch] = kept[:half:2] + kept[half:]

    def to_state(self) -> dict[str, Any]:
        return {"tracker": None if self.tracker is None else self.tracker.to_state(), "windows": self.windows,
                "start_s": self.start_s}

    @classmethod
    def from_state(cls, s: dict[str, Any], min_duration_s: float) -> "FatiguePart":
        p = cls.__new__(cls)
        p.min_duration_s = float(min_duration_s)
        p.start_s = float(s.get("start_s", 0.0))
        p._added = True
        p.tracker = None if s["tracker"] is None else SpectralTracker.from_state(s["tracker"])
        p.windows = [[list(w) for w in ch] for ch in s["windows"]]
        return p

    def record_fields(self, act: Activation) -> dict[str, float]:
        """`fit` as the ActivationRecord's fatigue fields (none for an activation that is not sustained)."""
        f = self.fit(act)
        if f is None:
            return {}
        return {"median_freq_hz": f.median_freq_hz, "mean_freq_hz": f.mean_freq_hz,
                "median_freq_slope_hz_s": f.median_freq_slope_hz_s, "mean_freq_slope_hz_s": f.mean_freq_slope_hz_s}

    def after_frame(self, detectors: list[Any] | None) -> None:
        """`trim` with the chain's detectors' open state."""
        self.trim([d.open_onset is not None for d in detectors or []])

"""The streaming conditioning chain of one device: all its channels at once.

    raw µV (n_channels, n) -> offset removal -> [stimulation blanking]
      -> band-pass (Butterworth SOS) -> mains notch + harmonics
      -> square -> moving RMS envelope -> [activation detection]
      -> quality statistics per aligned window

`MultiChannelChain.process(block)` takes a frame of any length and returns a
`ChainOutput`; the concatenated outputs equal those of one call on the whole
signal. `to_state()` / `from_state()` give plain dicts (JSON/msgpack-safe,
float64-exact) for a changelog-backed table; restoring mid-stream continues
exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from processors.dsp.activation import ActivationDetector, Activation, Baseline
from processors.dsp.envelope import DEFAULT_HOP_S, DEFAULT_WINDOW_S, EnvelopeTiming, MovingSum
from processors.dsp.filters import (DEFAULT_BAND_HZ, DEFAULT_NOTCH_Q, DEFAULT_ORDER, CombNotch, OffsetRemover,
                                    SOSFilter, StimBlanker, as_2d, design_bandpass, make_notch, notch_from_state)

STATE_VERSION = 1
ELECTRODE_OFF_SD_UV = 0.05


@dataclass(frozen=True)
class ChainConfig:
    """Everything that defines the chain, as plain data."""

    fs_hz: float
    n_channels: int
    band_hz: tuple[float, float] = DEFAULT_BAND_HZ
    order: int = DEFAULT_ORDER
    mains_hz: float | None = 50.0
    notch_q: float = DEFAULT_NOTCH_Q
    window_s: float = DEFAULT_WINDOW_S
    hop_s: float = DEFAULT_HOP_S
    quality_window_s: float = 1.0
    lowfreq_block_s: float = 0.025  # boxcar for the < ~20 Hz (motion) power estimate: -3 dB at 17.7 Hz
    stim_slope_uv: float | None = None  # blank stimulation pulses whose edge exceeds this step per sample
    stim_blank_s: float = 0.004
    full_scale_uv: tuple[float, float] | None = None  # ADC range, for clipping; None = unknown
    min_on_s: float = 0.1
    min_off_s: float = 0.1
    settle_s: float = 0.5  # no activations from the first settle_s of the stream (filter start-up)
    keep_conditioned: bool = False  # return the conditioned signal too (for plots, fatigue)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["band_hz"] = list(self.band_hz)
        d["full_scale_uv"] = None if self.full_scale_uv is None else list(self.full_scale_uv)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ChainConfig":
        d = dict(d)
        d["band_hz"] = tuple(d["band_hz"])
        if d.get("full_scale_uv") is not None:
            d["full_scale_uv"] = tuple(d["full_scale_uv"])
        return cls(**d)

    @property
    def timing(self) -> EnvelopeTiming:
        return EnvelopeTiming.from_seconds(self.fs_hz, self.window_s, self.hop_s)


@dataclass
class QualityWindow:
    """Streaming quality of one aligned window (all channels); arrays per channel."""

    index: int
    start_s: float
    duration_s: float
    rms_uv: np.ndarray  # conditioned signal RMS
    raw_sd_uv: np.ndarray  # raw (offset removed) standard deviation
    mains_power_ratio: np.ndarray  # power removed by the notch / conditioned power before it
    lowfreq_power_ratio: np.ndarray  # power of 25 ms block means (~ < 20 Hz) / raw variance
    flat_fraction: np.ndarray  # fraction of samples equal to the previous one
    clipping_fraction: np.ndarray | None  # fraction at the ADC rails (None without full_scale_uv)
    electrode_off: np.ndarray  # bool

    def channel_dict(self, i: int) -> dict[str, Any]:
        def f(a: np.ndarray | None) -> Any:
            return None if a is None else (bool(a[i]) if a.dtype == bool else float(a[i]))
        return {"rms_uv": f(self.rms_uv), "raw_sd_uv": f(self.raw_sd_uv),
                "mains_power_ratio": f(self.mains_power_ratio), "lowfreq_power_ratio": f(self.lowfreq_power_ratio),
                "flat_fraction": f(self.flat_fraction), "clipping_fraction": f(self.clipping_fraction),
                "electrode_off": f(self.electrode_off)}


@dataclass
class ChainOutput:
    envelope_uv: np.ndarray  # (n_channels, k) new envelope samples
    envelope_index0: int  # absolute envelope index of envelope_uv[:, 0]
    envelope_times_s: np.ndarray  # window centres, seconds from stream start
    activations: list[Activation] = field(default_factory=list)
    quality: list[QualityWindow] = field(default_factory=list)
    conditioned_uv: np.ndarray | None = None
    blanked_samples: int = 0


_N_STATS = 6  # raw, raw^2, cond^2, removed^2, same-as-previous, at-rail


class QualityAccumulator:
    """Per-sample statistics summed over aligned blocks, then over aligned windows."""

    def __init__(self, cfg: ChainConfig, blocks: MovingSum | None = None, pending: np.ndarray | None = None,
                 n_windows: int = 0, last_raw: np.ndarray | None = None):
        self.cfg = cfg
        n = cfg.n_channels
        self.block_n = max(1, int(round(cfg.lowfreq_block_s * cfg.fs_hz)))
        self.blocks_per_window = max(1, int(round(cfg.quality_window_s * cfg.fs_hz / self.block_n)))
        self.blocks = blocks or MovingSum(_N_STATS * n, self.block_n, 1)
        self.pending = np.zeros((_N_STATS * n + n, 0)) if pending is None else np.asarray(pending, dtype=np.float64).reshape(_N_STATS * n + n, -1)
        self.n_windows = int(n_windows)
        self.last_raw = None if last_raw is None else np.asarray(last_raw, dtype=np.float64)

    def process(self, raw: np.ndarray, cond2: np.ndarray, removed2: np.ndarray,
                source: np.ndarray | None = None) -> list[QualityWindow]:
        """raw: offset-removed input; source: the input as received (for the ADC rails)."""
        n_ch, n = raw.shape
        if n == 0:
            return []
        prev = raw[:, :1] + 1.0 if self.last_raw is None else self.last_raw[:, None]
        same = (raw == np.concatenate([prev, raw[:, :-1]], axis=-1)).astype(np.float64)
        self.last_raw = raw[:, -1].copy()
        fs = self.cfg.full_scale_uv
        if fs is not None:
            tol = 1e-3 * (fs[1] - fs[0])
            src = raw if source is None else source
            rail = ((src <= fs[0] + tol) | (src >= fs[1] - tol)).astype(np.float64)
        else:
            rail = np.zeros_like(raw)
        stats = np.concatenate([raw, raw * raw, cond2, removed2, same, rail], axis=0)
        bs = self.blocks.process(stats)  # (_N_STATS*n_ch, nb)
        if bs.shape[1] == 0:
            return []
        blockmean2 = (bs[:n_ch] / self.block_n) ** 2  # squared block means of raw
        seq = np.concatenate([bs, blockmean2], axis=0)
        if self.pending.shape[1]:
            seq = np.concatenate([self.pending, seq], axis=-1)
        bpw = self.blocks_per_window
        nw = seq.shape[1] // bpw
        self.pending = seq[:, nw * bpw:].copy()
        out = []
        if nw == 0:
            return out
        w = seq[:, : nw * bpw].reshape(seq.shape[0], nw, bpw).sum(axis=-1)
        cnt = float(bpw * self.block_n)
        for j in range(nw):
            col = w[:, j].reshape(-1)
            s1, s2, c2, r2, same_c, rail_c = (col[k * n_ch:(k + 1) * n_ch] for k in range(_N_STATS))
            bm2 = col[_N_STATS * n_ch:]
            mean = s1 / cnt
            var = np.maximum(s2 / cnt - mean * mean, 0.0)
            lf = np.maximum(bm2 / bpw - mean * mean, 0.0)
            with np.errstate(invalid="ignore", divide="ignore"):
                mains = np.where(c2 + r2 > 0, r2 / (c2 + r2), 0.0)
                lfr = np.where(var > 0, np.minimum(lf / var, 1.0), 0.0)
            flat = same_c / cnt
            sd = np.sqrt(var)
            out.append(QualityWindow(
                self.n_windows, self.n_windows * cnt / self.cfg.fs_hz, cnt / self.cfg.fs_hz,
                np.sqrt(c2 / cnt), sd, mains, lfr, flat,
                None if fs is None else rail_c / cnt, (flat > 0.5) | (sd < ELECTRODE_OFF_SD_UV)))
            self.n_windows += 1
        return out

    def to_state(self) -> dict[str, Any]:
        return {"blocks": self.blocks.to_state(), "pending": self.pending.tolist(), "n_windows": self.n_windows,
                "last_raw": None if self.last_raw is None else self.last_raw.tolist()}

    @classmethod
    def from_state(cls, cfg: ChainConfig, s: dict[str, Any]) -> "QualityAccumulator":
        return cls(cfg, MovingSum.from_state(s["blocks"]), np.array(s["pending"]), s["n_windows"],
                   None if s["last_raw"] is None else np.array(s["last_raw"]))


class MultiChannelChain:
    """Streaming chain for one device: `process((n_channels, n))` -> ChainOutput.

    Activation detection runs once thresholds are set (`set_baselines`, e.g. from the
    session's rest task); until then `activations` stays empty.
    """

    def __init__(self, cfg: ChainConfig, *, _restore: dict[str, Any] | None = None):
        self.cfg = cfg
        n = cfg.n_channels
        self.timing = cfg.timing
        if _restore is None:
            self.offset = OffsetRemover(n)
            self.blanker = StimBlanker(cfg.fs_hz, n, cfg.stim_slope_uv, cfg.stim_blank_s) if cfg.stim_slope_uv else None
            self.bandpass = SOSFilter(design_bandpass(cfg.fs_hz, cfg.band_hz, cfg.order), n)
            self.notch: CombNotch | SOSFilter = make_notch(cfg.fs_hz, cfg.mains_hz, n, cfg.notch_q)
            self.rms = MovingSum(n, self.timing.hop_n, self.timing.blocks)
            self.quality = QualityAccumulator(cfg)
            self.detectors: list[ActivationDetector] | None = None
            self.n_samples = 0
        else:
            s = _restore
            self.offset = OffsetRemover.from_state(s["offset"])
            self.blanker = StimBlanker.from_state(s["blanker"]) if s["blanker"] else None
            self.bandpass = SOSFilter.from_state(s["bandpass"])
            self.notch = notch_from_state(s["notch"])
            self.rms = MovingSum.from_state(s["rms"])
            self.quality = QualityAccumulator.from_state(cfg, s["quality"])
            self.detectors = None if s["detectors"] is None else [ActivationDetector.from_state(d) for d in s["detectors"]]
            self.n_samples = s["n_samples"]

    # --- configuration ---
    def set_baselines(self, baselines: list[Baseline] | list[float]) -> None:
        """Start activation detection with one baseline (or plain threshold in µV) per channel."""
        if len(baselines) != self.cfg.n_channels:
            raise ValueError("one baseline per channel")
        thr = [b.threshold if isinstance(b, Baseline) else float(b) for b in baselines]
        n_seen = self.rms.n_out
        self.detectors = []
        for i, t in enumerate(thr):
            d = ActivationDetector(t, self.timing, i, self.cfg.min_on_s, self.cfg.min_off_s, self.cfg.settle_s)
            d.n_seen = n_seen
            self.detectors.append(d)

    # --- processing ---
    def process(self, block: np.ndarray) -> ChainOutput:
        x = as_2d(block)
        if x.shape[0] != self.cfg.n_channels:
            raise ValueError(f"expected {self.cfg.n_channels} channels, got {x.shape[0]}")
        self.n_samples += x.shape[1]
        source = x
        x = self.offset.process(x)
        blanked = 0
        if self.blanker is not None:
            x, mask = self.blanker.process(x)
            blanked = int(mask.sum())
        bp = self.bandpass.process(x)
        y = self.notch.process(bp)
        y2 = y * y
        removed = bp - y
        k0 = self.rms.n_out
        env = np.sqrt(self.rms.process(y2) * (1.0 / self.timing.window_n))
        acts: list[Activation] = []
        if self.detectors is not None and env.shape[1]:
            for i, det in enumerate(self.detectors):
                acts.extend(det.process(env[i]))
        q = self.quality.process(x, y2, removed * removed, source)
        times = self.timing.centre_s(np.arange(k0, k0 + env.shape[1]))
        return ChainOutput(env, k0, times, acts, q, y if self.cfg.keep_conditioned else None, blanked)

    def flush(self) -> list[Activation]:
        """End of stream: close open activations."""
        out: list[Activation] = []
        for det in self.detectors or []:
            out.extend(det.flush())
        return out

    # --- state ---
    def to_state(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, "config": self.cfg.to_dict(), "n_samples": self.n_samples,
                "offset": self.offset.to_state(),
                "blanker": None if self.blanker is None else self.blanker.to_state(),
                "bandpass": self.bandpass.to_state(), "notch": self.notch.to_state(),
                "rms": self.rms.to_state(), "quality": self.quality.to_state(),
                "detectors": None if self.detectors is None else [d.to_state() for d in self.detectors]}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "MultiChannelChain":
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported chain state version {state.get('version')}")
        return cls(ChainConfig.from_dict(state["config"]), _restore=state)


class ChannelChain(MultiChannelChain):
    """The same chain for a single channel (1-D frames in, 1-row outputs)."""

    def __init__(self, cfg: ChainConfig, *, _restore: dict[str, Any] | None = None):
        if cfg.n_channels != 1:
            raise ValueError("ChannelChain is single-channel; use MultiChannelChain")
        super().__init__(cfg, _restore=_restore)

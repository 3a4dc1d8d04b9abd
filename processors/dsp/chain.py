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
from functools import cached_property
from typing import Any

import numpy as np

from processors.dsp.activation import ActivationDetector, Activation, Baseline
from processors.dsp.envelope import DEFAULT_HOP_S, DEFAULT_WINDOW_S, EnvelopeTiming, MovingSum, block_sum, window_sums
from processors.dsp.state import pack_state, unpack_state
from processors.dsp.filters import (DEFAULT_BAND_HZ, DEFAULT_NOTCH_Q, DEFAULT_ORDER, CombNotch, OffsetRemover,
                                    SOSFilter, StimBlanker, as_2d, design_bandpass, make_notch, notch_from_state)

STATE_VERSION = 5
CHUNK_SAMPLES = 8192  # per channel: keeps the temporaries of a long input in cache
ELECTRODE_OFF_SD_UV = 0.05
FOLD_HOPS = 10  # quality: unfolded hops kept before adding them to the running sums
FLAT_SD_UV = 0.01  # a hop whose samples vary less than this is flat (ADC steps are ~0.1-1 µV)


@dataclass(frozen=True)
class ChainConfig:
    """Everything that defines the chain, as plain data."""

    fs_hz: float
    n_channels: int
    band_hz: tuple[float, float] = DEFAULT_BAND_HZ
    order: int = DEFAULT_ORDER
    mains_hz: float | None = 50.0
    notch_q: float = DEFAULT_NOTCH_Q
    notch_max_hz: float | None = None  # None: every harmonic below Nyquist (only matters without a comb)
    window_s: float = DEFAULT_WINDOW_S
    hop_s: float = DEFAULT_HOP_S
    quality_window_s: float = 1.0
    lowfreq_block_s: float = 0.025  # boxcar for the < ~20 Hz (motion) power estimate, rounded to whole hops
    # (20 ms at the default 10 ms hop: -3 dB at 22 Hz)
    stim_slope_uv: float | None = None  # blank stimulation pulses whose edge exceeds this step per sample
    stim_blank_s: float = 0.004
    full_scale_uv: tuple[float, float] | None = None  # ADC range, for clipping; None = unknown
    min_on_s: float = 0.05
    min_off_s: float = 0.1
    settle_s: float = 0.5  # no activations from the first settle_s of the stream (filter start-up)
    keep_conditioned: bool = False  # return the conditioned signal too (for plots, fatigue)

    def to_dict(self) -> dict[str, Any]:
        return dict(self._plain)  # asdict() costs ~35 µs: too much for every frame's state save

    @cached_property
    def _plain(self) -> dict[str, Any]:
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
    mains_power_ratio: np.ndarray  # power removed by the notch / band-passed power before it
    lowfreq_power_ratio: np.ndarray  # power of ~25 ms block means (a boxcar low-pass, ~< 20 Hz) / raw variance
    flat_fraction: np.ndarray  # fraction of hops (10 ms) without variation (flat line)
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
    timing: EnvelopeTiming
    activations: list[Activation] = field(default_factory=list)
    quality: list[QualityWindow] = field(default_factory=list)
    conditioned_uv: np.ndarray | None = None
    blanked_samples: int = 0

    @property
    def envelope_times_s(self) -> np.ndarray:
        """Window centres of the new envelope samples, seconds from stream start."""
        return self.timing.centre_s(np.arange(self.envelope_index0, self.envelope_index0 + self.envelope_uv.shape[1]))


class MultiChannelChain:
    """Streaming chain for one device: `process((n_channels, n))` -> ChainOutput.

    Per-sample statistics (conditioned power for the RMS envelope; raw mean and
    power, band-passed power before the notch, samples at the ADC rails
    for quality) are summed once per hop into aligned blocks; the envelope and
    the quality windows are built from those block sums. Activation detection
    runs once thresholds are set (`set_baselines`, e.g. from the session's rest
    task); until then `activations` stays empty.
    """

    def __init__(self, cfg: ChainConfig, *, _restore: dict[str, Any] | None = None):
        self.cfg = cfg
        #: envelope samples made but not yet through `detect` (0 between calls of `process`)
        self.undetected = 0
        n = cfg.n_channels
        self.timing = cfg.timing
        hop = self.timing.hop_n
        #: hops per low-frequency block (motion power estimate) and per quality window
        self.lf_hops = max(1, int(round(cfg.lowfreq_block_s * cfg.fs_hz / hop)))
        self.q_hops = max(1, int(round(cfg.quality_window_s * cfg.fs_hz / hop / self.lf_hops))) * self.lf_hops
        self.has_notch = cfg.mains_hz is not None
        self.rows = ["cond2", "raw", "raw2"] + (["bp2"] if self.has_notch else []) \
            + (["rail"] if cfg.full_scale_uv is not None else [])
        nr = len(self.rows) * n
        if _restore is None:
            self.offset = OffsetRemover(n)
            self.blanker = StimBlanker(cfg.fs_hz, n, cfg.stim_slope_uv, cfg.stim_blank_s) if cfg.stim_slope_uv else None
            self.bandpass = SOSFilter(design_bandpass(cfg.fs_hz, cfg.band_hz, cfg.order), n)
            self.notch: CombNotch | SOSFilter = make_notch(cfg.fs_hz, cfg.mains_hz, n, cfg.notch_q, cfg.notch_max_hz)
            self.hops = MovingSum(nr, hop, 1)
            self.rms_tail = np.zeros((n, 0))
            self.n_env = 0
            self._reset_window()
            self.q_pending = np.zeros((nr, 0))
            self.n_qwin = 0
            self.detectors: list[ActivationDetector] | None = None
            self.n_samples = 0
        else:
            s = _restore
            self.offset = OffsetRemover.from_state(s["offset"])
            self.blanker = StimBlanker.from_state(s["blanker"]) if s["blanker"] else None
            self.bandpass = SOSFilter.from_state(s["bandpass"])
            self.notch = notch_from_state(s["notch"])
            self.hops = MovingSum.from_state(s["hops"])
            self.rms_tail = np.array(s["rms_tail"], dtype=np.float64).reshape(n, -1)
            self.n_env = s["n_env"]
            q = s["quality"]
            self.q_acc = np.array(q["acc"], dtype=np.float64)
            self.q_flat = np.array(q["flat"], dtype=np.float64)
            self.q_lf_sq = np.array(q["lf_sq"], dtype=np.float64)
            self.q_lf_part = np.array(q["lf_part"], dtype=np.float64).reshape(n, -1)
            self.q_count = q["count"]
            self.q_pending = np.array(q["pending"], dtype=np.float64).reshape(nr, -1)
            self.n_qwin = s["n_qwin"]
            self.detectors = None if s["detectors"] is None else [ActivationDetector.from_state(d) for d in s["detectors"]]
            self.n_samples = s["n_samples"]

    # --- configuration ---
    def set_baselines(self, baselines: list[Baseline] | list[float]) -> None:
        """Start activation detection with one baseline (or plain threshold in µV) per channel."""
        if len(baselines) != self.cfg.n_channels:
            raise ValueError("one baseline per channel")
        thr = [b.threshold if isinstance(b, Baseline) else float(b) for b in baselines]
        self.detectors = []
        for i, t in enumerate(thr):
            d = ActivationDetector(t, self.timing, i, self.cfg.min_on_s, self.cfg.min_off_s, self.cfg.settle_s)
            d.n_seen = self.n_env - self.undetected
            self.detectors.append(d)

    # --- processing ---
    def process(self, block: np.ndarray, detect: bool = True) -> ChainOutput:
        """Process a frame of any length (n_channels, n); long inputs are cut into
        cache-sized chunks internally (exact, since framing never changes the output).
        `detect=False`: the caller runs `detect` on the envelope itself (a causal baseline
        moves the thresholds inside a frame: `processors.dsp.rest_baseline`)."""
        x = as_2d(block)
        if x.shape[0] != self.cfg.n_channels:
            raise ValueError(f"expected {self.cfg.n_channels} channels, got {x.shape[0]}")
        if x.shape[1] <= CHUNK_SAMPLES:
            return self._process(x, detect)
        parts = [self._process(x[:, i:i + CHUNK_SAMPLES], detect) for i in range(0, x.shape[1], CHUNK_SAMPLES)]
        return ChainOutput(np.concatenate([p.envelope_uv for p in parts], axis=-1), parts[0].envelope_index0,
                           self.timing, [a for p in parts for a in p.activations], [q for p in parts for q in p.quality],
                           np.concatenate([p.conditioned_uv for p in parts], axis=-1) if self.cfg.keep_conditioned else None,
                           sum(p.blanked_samples for p in parts))

    def _process(self, x: np.ndarray, detect: bool = True) -> ChainOutput:
        n_ch, n = x.shape
        self.n_samples += n
        # per-sample statistics, one row block each, summed per hop; the offset-removed
        # input is written straight into its row block (no extra copy)
        st = np.empty((len(self.rows) * n_ch, n))
        raw = st[n_ch:2 * n_ch]
        if self.offset.offset is None and n:
            self.offset.process(x[:, :1])
        np.subtract(x, self.offset.offset if self.offset.offset is not None else 0.0, out=raw)
        blanked = 0
        if self.blanker is not None:
            b, mask = self.blanker.process(raw)
            raw[...] = b
            blanked = int(mask.sum())
        bp = self.bandpass.process_inplace(raw.copy())
        if isinstance(self.notch, CombNotch):
            u = self.notch.process_unscaled(bp)  # (n, n_ch), output / gain: square it without transposing
            np.multiply(u.T, u.T, out=st[0:n_ch])  # scaled by gain^2 after the hop sums
            y = np.multiply(u.T, self.notch.gain) if self.cfg.keep_conditioned else None
        else:
            y = self.notch.process_inplace(bp.copy()) if self.has_notch else bp
            np.multiply(y, y, out=st[0:n_ch])
        r = 2 * n_ch  # cond2, then raw (already there)
        np.multiply(raw, raw, out=st[r:r + n_ch]); r += n_ch
        if self.has_notch:
            np.multiply(bp, bp, out=st[r:r + n_ch]); r += n_ch
        if self.cfg.full_scale_uv is not None:
            lo, hi = self.cfg.full_scale_uv
            tol = 1e-3 * (hi - lo)
            np.logical_or(x <= lo + tol, x >= hi - tol, out=st[r:r + n_ch], casting="unsafe")
        hs = self.hops.process(st)  # (rows*n_ch, new hops)
        if isinstance(self.notch, CombNotch) and hs.shape[1]:
            hs[:n_ch] *= self.notch.gain ** 2
        env, k0 = self._envelope(hs[:n_ch]), self.n_env
        self.n_env += env.shape[1]
        self.undetected += env.shape[1]
        acts = self.detect(env) if detect else []
        q = self._quality(hs) if hs.shape[1] else []
        return ChainOutput(env, k0, self.timing, acts, q, y if self.cfg.keep_conditioned else None, blanked)

    def detect(self, env: np.ndarray) -> list[Activation]:
        """Run the detectors (if armed) on the next envelope columns (channels, n); the closed
        activations. Every envelope sample goes through here exactly once, in order."""
        acts: list[Activation] = []
        self.undetected -= env.shape[1]
        if self.detectors is not None and env.shape[1]:
            # one comparison for all channels; a detector at rest with nothing above its threshold
            # only counts the samples (what its own `process` would do, without the call)
            thr = np.array([det.threshold for det in self.detectors])
            any_above = (env > thr[:, None]).any(axis=1).tolist()
            for i, det in enumerate(self.detectors):
                if det.open_onset is None and not any_above[i]:
                    det.n_seen += env.shape[1]
                    det.last_value = float(env[i, -1])
                else:
                    acts.extend(det.process(env[i]))
        return acts

    def _envelope(self, hop_power: np.ndarray) -> np.ndarray:
        b = self.timing.blocks
        seq = np.concatenate([self.rms_tail, hop_power], axis=-1) if self.rms_tail.shape[1] else hop_power
        if b > 1:
            self.rms_tail = seq[:, -(b - 1):].copy()
        if seq.shape[1] < b:
            return np.zeros((hop_power.shape[0], 0))
        return np.sqrt(window_sums(seq, b) * (1.0 / self.timing.window_n))

    def _hop_stats(self, hs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per hop: flat indicator (n_ch, k) and raw hop sums (n_ch, k)."""
        n_ch, hop = self.cfg.n_channels, self.timing.hop_n
        raw = hs[n_ch:2 * n_ch]
        mean = raw / hop
        flat = hs[2 * n_ch:3 * n_ch] / hop - mean * mean <= FLAT_SD_UV ** 2
        return flat, raw

    def _fold(self, hs: np.ndarray) -> None:
        """Add hops of the current (incomplete) window to the running accumulators."""
        flat, raw = self._hop_stats(hs)
        self.q_acc += hs.sum(axis=1)
        self.q_flat += flat.sum(axis=1)
        seq = np.concatenate([self.q_lf_part, raw], axis=-1)
        m = self.lf_hops
        k = (seq.shape[1] // m) * m
        if k:
            means = seq[:, :k].reshape(seq.shape[0], -1, m).sum(axis=-1) / (m * self.timing.hop_n)
            self.q_lf_sq += (means * means).sum(axis=1)
        self.q_lf_part = seq[:, k:].copy()
        self.q_count += hs.shape[1]

    def _quality(self, hs: np.ndarray) -> list[QualityWindow]:
        """Quality windows completed by new hop sums. Between calls only running sums of
        the current window and at most FOLD_HOPS - 1 unfolded hops are kept."""
        if self.q_pending.shape[1]:
            hs = np.concatenate([self.q_pending, hs], axis=-1)
            self.q_pending = self.q_pending[:, :0]
        qh, out = self.q_hops, []
        if self.q_count and self.q_count + hs.shape[1] >= qh:  # finish the window in progress
            take = qh - self.q_count
            self._fold(hs[:, :take])
            hs = hs[:, take:]
            out.append(self._emit(self.q_acc, self.q_flat, self.q_lf_sq))
            self._reset_window()
        if self.q_count == 0 and hs.shape[1] >= qh:  # whole windows, vectorised
            nw = hs.shape[1] // qh
            n_ch = self.cfg.n_channels
            full = hs[:, : nw * qh].reshape(hs.shape[0], nw, qh)
            sums = block_sum(full)
            flat, raw = self._hop_stats(hs[:, : nw * qh])
            flat_c = flat.reshape(n_ch, nw, qh).sum(axis=-1)
            m = self.lf_hops
            means = raw.reshape(n_ch, nw, qh // m, m).sum(axis=-1) / (m * self.timing.hop_n)
            lf_sq = (means * means).sum(axis=-1)
            for j in range(nw):
                out.append(self._emit(sums[:, j], flat_c[:, j], lf_sq[:, j]))
            hs = hs[:, nw * qh:]
        if hs.shape[1] >= FOLD_HOPS:
            self._fold(hs)
        elif hs.shape[1]:
            self.q_pending = hs.copy()
        return out

    def _reset_window(self) -> None:
        n_ch = self.cfg.n_channels
        self.q_acc = np.zeros(len(self.rows) * n_ch)
        self.q_flat = np.zeros(n_ch)
        self.q_lf_sq = np.zeros(n_ch)
        self.q_lf_part = np.zeros((n_ch, 0))
        self.q_count = 0

    def _emit(self, sums: np.ndarray, flat_count: np.ndarray, lf_sq: np.ndarray) -> QualityWindow:
        n_ch, hop, qh = self.cfg.n_channels, self.timing.hop_n, self.q_hops
        row = {name: sums[i * n_ch:(i + 1) * n_ch] for i, name in enumerate(self.rows)}
        cnt = float(qh * hop)
        mean = row["raw"] / cnt
        var = np.maximum(row["raw2"] / cnt - mean * mean, 0.0)
        lf = np.maximum(lf_sq / (qh // self.lf_hops) - mean * mean, 0.0)
        c2 = row["cond2"]
        b2 = row["bp2"] if self.has_notch else c2
        with np.errstate(invalid="ignore", divide="ignore"):
            # the notch output is (nearly) orthogonal to what it removes: removed power = bp2 - c2
            mains = np.where(b2 > 0, np.maximum(b2 - c2, 0.0) / np.where(b2 > 0, b2, 1.0), 0.0)
            lfr = np.where(var > 0, np.minimum(lf / np.where(var > 0, var, 1.0), 1.0), 0.0)
        sd = np.sqrt(var)
        flat = flat_count / qh
        w = QualityWindow(self.n_qwin, self.n_qwin * cnt / self.cfg.fs_hz, cnt / self.cfg.fs_hz,
                          np.sqrt(c2 / cnt), sd, mains, lfr, flat,
                          row["rail"] / cnt if "rail" in row else None, (flat > 0.5) | (sd < ELECTRODE_OFF_SD_UV))
        self.n_qwin += 1
        return w

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
                "hops": self.hops.to_state(), "rms_tail": self.rms_tail.tolist(), "n_env": self.n_env,
                "quality": {"acc": self.q_acc.tolist(), "flat": self.q_flat.tolist(), "lf_sq": self.q_lf_sq.tolist(),
                            "lf_part": self.q_lf_part.tolist(), "count": self.q_count,
                            "pending": self.q_pending.tolist()},
                "n_qwin": self.n_qwin,
                "detectors": None if self.detectors is None else [d.to_state() for d in self.detectors]}

    def to_bytes(self) -> bytes:
        """The state in compact binary form (exact; ~10-11 KB for 8 channels at 2 kHz in 50 ms frames)."""
        return pack_state(self.to_state())

    @classmethod
    def from_bytes(cls, blob: bytes) -> "MultiChannelChain":
        return cls.from_state(unpack_state(blob))

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

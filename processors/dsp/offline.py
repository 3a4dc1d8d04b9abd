"""Offline processing of a whole recording (the `mimetic dsp` command).

Runs exactly the streaming chain over the whole signal (one frame), then the
metrics that need the whole picture: activations, median frequency, full
quality metrics, left/right pairs.

Activation baseline (`baseline`):
  * "causal" (default): the live worker's, `processors.dsp.rest_baseline` (the
    quietest full 1 s window so far; detection from the third second on), so a
    recording gives the same activations here as replayed through the pipeline;
  * "whole-recording": estimated from the whole recording afterwards
    (`estimate_baseline`: the quietest quarter of its 0.5 s segments). It can
    see quiet stretches after an activation, which no live process can: on a
    recording without a quiet start its activations differ from the live ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mimetic.domain import Side, parse_channel_name
from processors.dsp.activation import Activation, Baseline, detect_activations, estimate_baseline
from processors.dsp.balance import none_if_nan, pair_balance, window_rms
from processors.measures.balance import activity_level_uv
from processors.dsp.chain import ChainConfig, MultiChannelChain
from processors.dsp.envelope import DEFAULT_HOP_S, DEFAULT_WINDOW_S, EnvelopeTiming
from processors.dsp.fatigue import frequency_track
from processors.dsp.filters import DEFAULT_BAND_HZ
from processors.dsp.quality import channel_quality, detect_mains
from processors.dsp.rest_baseline import RestBaseline, WindowSums, detect_causal
from processors.dsp.spectrum import median_mean_frequency, welch_psd
from processors.measures.fatigue import MIN_SUSTAINED_S, activation_fatigue


BASELINES = ("causal", "whole-recording")


@dataclass
class OfflineResult:
    fs_hz: float
    timing: EnvelopeTiming
    mains_hz: float | None
    names: list[str]
    raw: np.ndarray
    conditioned: np.ndarray
    envelope: np.ndarray
    baselines: list[Baseline]
    activations: list[list[Activation]]
    report: dict[str, Any]


def _f(v: Any) -> Any:
    if v is None:
        return None
    return none_if_nan(v)


def process_signals(samples_uv: np.ndarray, fs_hz: float, names: list[str], *,
                    band_hz: tuple[float, float] = DEFAULT_BAND_HZ, mains_hz: float | None | str = "auto",
                    window_s: float = DEFAULT_WINDOW_S, hop_s: float = DEFAULT_HOP_S, k: float = 3.0,
                    min_on_s: float = 0.05, min_off_s: float = 0.1, settle_s: float = 0.5, affected: str | None = None,
                    extra: dict[str, Any] | None = None, calibrated: bool = True,
                    baseline: str = "causal") -> OfflineResult:
    """Full offline analysis of (n_channels, n_samples) µV; returns arrays and the JSON report.
    `baseline`: "causal" (the live worker's) or "whole-recording" (module doc)."""
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {', '.join(BASELINES)}, not {baseline!r}")
    x = np.asarray(samples_uv, dtype=np.float64)
    if mains_hz == "auto":
        mains_hz = detect_mains(x, fs_hz)
    cfg = ChainConfig(fs_hz=fs_hz, n_channels=x.shape[0], band_hz=tuple(band_hz), mains_hz=mains_hz,
                      window_s=window_s, hop_s=hop_s, min_on_s=min_on_s, min_off_s=min_off_s,
                      settle_s=settle_s, keep_conditioned=True)
    chain = MultiChannelChain(cfg)
    out = chain.process(x, detect=False)
    env, cond, timing = out.envelope_uv, out.conditioned_uv, chain.timing
    efs = timing.envelope_fs_hz
    if baseline == "causal":
        baselines, acts = _causal(chain, env, out.envelope_times_s, k)
    else:
        baselines, acts = [], []
        for i in range(len(names)):
            settle = min(int(np.ceil(settle_s * efs)), env.shape[1] // 2)
            b = estimate_baseline(env[i][settle:], efs, k)
            baselines.append(b)
            acts.append(detect_activations(env[i], timing, b.threshold, i, min_on_s, min_off_s, settle_s))
    channels = []
    for i, name in enumerate(names):
        b, a = baselines[i], acts[i]
        f, p = welch_psd(cond[i], fs_hz, 0.25)
        med, mean = median_mean_frequency(f, p, (band_hz[0], min(band_hz[1], fs_hz / 2)))
        q = channel_quality(x[i], cond[i], env[i], fs_hz, efs, mains_hz, calibrated=calibrated)
        fatigue = _fatigue(cond[i], fs_hz, a, band_hz)
        channels.append({
            "name": name,
            "envelope_uv": env[i].tolist(),
            "envelope_t0_s": float(timing.centre_s(0)),
            "baseline": {"mean_uv": b.mean, "sd_uv": b.sd, "k": b.k, "threshold_uv": b.threshold},
            "activations": [{"onset_s": a_.onset_s, "offset_s": a_.offset_s, "duration_s": a_.duration_s,
                             "peak_uv": a_.peak, "mean_uv": a_.mean, "area_uv_s": a_.area} for a_ in a],
            "median_freq_hz": _f(med[0]),
            "mean_freq_hz": _f(mean[0]),
            "fatigue": fatigue,
            "quality": q,
        })
    pairs = _pairs(names, env, timing, baselines, acts, affected)
    report = {
        "fs_hz": float(fs_hz),
        "envelope_fs_hz": float(efs),
        "window_s": timing.window_s,
        "hop_s": timing.hop_s,
        "band_hz": [float(band_hz[0]), float(min(band_hz[1], 0.95 * fs_hz / 2))],
        "notch_hz": mains_hz,
        "baseline": baseline,
        "n_samples": int(x.shape[1]),
        "duration_s": x.shape[1] / fs_hz,
        **(extra or {}),
        "channels": channels,
        "pairs": pairs,
    }
    return OfflineResult(fs_hz, timing, mains_hz, names, x, cond, env, baselines, acts, report)


def _causal(chain: MultiChannelChain, env: np.ndarray, times_s: np.ndarray,
            k: float) -> tuple[list[Baseline], list[list[Activation]]]:
    """The live worker's detection (causal rest baseline) over the whole envelope, then the
    activation still open at the end closed (the recording ends there). Baselines: the final
    rest baseline (or the whole envelope's minimum window if shorter than the warm-up)."""
    rest = RestBaseline()
    found, _closed = detect_causal(chain, rest, WindowSums(), env, times_s, k)
    found += chain.flush()
    acts: list[list[Activation]] = [[] for _ in range(env.shape[0])]
    for a in found:
        acts[a.channel].append(a)
    if rest.mean is None or len(rest.mean) != env.shape[0]:
        return [Baseline(0.0, 0.0, k) for _ in range(env.shape[0])], acts
    return [rest.as_baseline(i, k) for i in range(env.shape[0])], acts


def _fatigue(cond: np.ndarray, fs_hz: float, acts: list[Activation], band_hz: tuple[float, float],
             min_s: float = MIN_SUSTAINED_S) -> dict[str, Any] | None:
    """The fatigue of the longest activation if it is a sustained one, by the definition the pipeline
    uses (`processors.measures.fatigue.activation_fatigue`: 1 s windows from the recording's start,
    those wholly inside the activation)."""
    longest = max(acts, key=lambda a: a.duration_s, default=None)
    if longest is None or longest.duration_s < min_s:
        return None
    track = frequency_track(cond, fs_hz, 1.0, 0.5, 0.25, (band_hz[0], min(band_hz[1], fs_hz / 2)))
    start = track.times_s - 0.5
    f = activation_fatigue(start, start + 1.0, track.median_hz[0], track.mean_hz[0], longest.onset_s,
                           longest.offset_s, min_s)
    if f is None:
        return None
    first = track.median_hz[0][(start >= longest.onset_s) & np.isfinite(track.median_hz[0])][0]
    return {"onset_s": longest.onset_s, "offset_s": longest.offset_s, "windows": f.windows,
            "median_freq_start_hz": _f(first), "median_freq_hz": _f(f.median_freq_hz),
            "mean_freq_hz": _f(f.mean_freq_hz), "median_freq_slope_hz_per_s": _f(f.median_freq_slope_hz_s),
            "mean_freq_slope_hz_per_s": _f(f.mean_freq_slope_hz_s),
            "median_freq_relative_change_per_min": _f(f.median_freq_slope_hz_s * 60.0 / first) if first else None}


def _pairs(names: list[str], env: np.ndarray, timing: EnvelopeTiming, baselines: list[Baseline],
           acts: list[list[Activation]], affected: str | None) -> list[dict[str, Any]]:
    """Balance of every muscle that has both sides, over the union of both sides' activations."""
    sides: dict[str, dict[str, int]] = {}
    for i, n in enumerate(names):
        try:
            muscle, side = parse_channel_name(n)
        except ValueError:
            continue
        sides.setdefault(muscle, {})[side.value] = i
    out = []
    for muscle, s in sides.items():
        if "L" not in s or "R" not in s:
            continue
        li, ri = s["L"], s["R"]
        n = min(env[li].size, env[ri].size)
        mask = np.zeros(n, dtype=bool)
        for a in acts[li] + acts[ri]:
            mask[a.onset_index:min(a.offset_index, n)] = True
        bl, br = baselines[li], baselines[ri]
        sel = mask if mask.any() else slice(None)
        lm = window_rms(env[li][:n][sel]) if n else 0.0
        rm = window_rms(env[ri][:n][sel]) if n else 0.0
        # rest level of each side: the RMS of its rest envelope, sqrt(mean^2 + SD^2)
        rest_l, rest_r = float(np.hypot(bl.mean, bl.sd)), float(np.hypot(br.mean, br.sd))
        aff = affected
        if aff is None:  # unknown: the weaker side counts as affected, so ratio <= 1
            lev_l, lev_r = activity_level_uv(lm * lm, rest_l), activity_level_uv(rm * rm, rest_r)
            aff = Side.LEFT.value if lev_l <= lev_r else Side.RIGHT.value
        pb = pair_balance(muscle, lm, rm, aff, rest_l, rest_r, bl.threshold, br.threshold)
        d = pb.to_dict()
        d["active_s"] = float(mask.sum() / timing.envelope_fs_hz)
        out.append(d)
    return out


def plot_result(res: OfflineResult, path: str, title: str = "") -> None:
    """PNG: per channel, the conditioned signal, the RMS envelope, the threshold and activations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(res.names)
    fig, axes = plt.subplots(n, 1, figsize=(12, 1.9 * n + 0.8), sharex=True, squeeze=False)
    t_raw = np.arange(res.conditioned.shape[1]) / res.fs_hz
    t_env = res.timing.centre_s(np.arange(res.envelope.shape[1]))
    step = max(1, res.conditioned.shape[1] // 200_000)
    unit = res.report.get("units_label", "µV")
    for i, ax in enumerate(axes[:, 0]):
        ax.plot(t_raw[::step], res.conditioned[i, ::step], color="0.72", lw=0.4, label="conditioned")
        ax.plot(t_env, res.envelope[i], color="tab:blue", lw=1.1, label=f"RMS envelope ({res.timing.window_s * 1e3:.0f} ms)")
        ax.axhline(res.baselines[i].threshold, color="tab:red", ls="--", lw=0.8, label="threshold")
        for a in res.activations[i]:
            ax.axvspan(a.onset_s, max(a.offset_s, a.onset_s + res.timing.hop_s), color="tab:orange", alpha=0.25, lw=0)
        lim = max(float(np.percentile(np.abs(res.conditioned[i]), 99.9)), float(res.envelope[i].max(initial=0))) * 1.15
        ax.set_ylim(-lim, lim)
        ax.set_ylabel(f"{res.names[i]}\n[{unit}]", fontsize=8)
        ax.text(0.995, 0.95, f"{len(res.activations[i])} activations", transform=ax.transAxes, ha="right",
                va="top", fontsize=7)
    axes[0, 0].legend(loc="upper left", fontsize=7, ncol=3)
    axes[-1, 0].set_xlabel("time [s]")
    notch = f"notch {res.mains_hz:g} Hz" if res.mains_hz else "no notch"
    fig.suptitle(f"{title}  (fs {res.fs_hz:g} Hz, {notch}; orange = activations)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

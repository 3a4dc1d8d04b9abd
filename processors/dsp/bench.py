"""`mimetic bench dsp`: throughput of the streaming chain.

8 channels at 2 kHz of synthetic sEMG (bursts + 50 Hz hum). Measured, in the same run:
  * plain: one `scipy.signal.sosfilt` band-pass pass over the whole signal (the yardstick);
  * chain whole: MultiChannelChain.process(whole signal);
  * chain frames: the same chain fed 50 ms frames (100 samples x 8 channels), as a worker does;
  * the same with 60 Hz mains (fs/60 is not whole: one notch section per harmonic);
  * NeuroKit2 `emg_process`, channel by channel, on the first seconds of the same signal.
Throughput is samples (all channels) per second of *process CPU time*, i.e. per core,
best of `repeats` runs; wall-clock figures are in the JSON too. The machine is shared,
so CPU time is the steadier of the two.
"""

from __future__ import annotations

import json
import os
import platform
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy
import scipy.signal as ss

from processors.dsp.chain import ChainConfig, MultiChannelChain
from processors.dsp.filters import design_bandpass

FS_HZ = 2000.0
N_CHANNELS = 8
FRAME_S = 0.050
TARGET_FRAMES_MSPS = 10.0
TARGET_RATIO = 3.0


def synthetic_device(seconds: float, seed: int = 0) -> np.ndarray:
    """(8, n) µV: band-limited noise, a 2 s burst every 5 s per channel, 50 Hz hum, offsets."""
    rng = np.random.default_rng(seed)
    n = int(seconds * FS_HZ)
    t = np.arange(n) / FS_HZ
    sos = ss.butter(4, [30, 250], btype="bandpass", fs=FS_HZ, output="sos")
    noise = ss.sosfilt(sos, rng.normal(size=(N_CHANNELS, n)), axis=-1)
    noise /= noise.std(axis=-1, keepdims=True)
    amp = 5.0 + 95.0 * ((t[None, :] + np.arange(N_CHANNELS)[:, None] * 0.6) % 5.0 < 2.0)
    return noise * amp + 20.0 * np.sin(2 * np.pi * 50.0 * t) + rng.uniform(-500, 500, size=(N_CHANNELS, 1))


def _best(fn: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """(best CPU seconds, best wall seconds) of `repeats` runs."""
    cpu, wall = [], []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return min(cpu), min(wall)


def run_bench(out: Path, seconds: float = 60.0, repeats: int = 5, nk_seconds: float = 5.0,
              echo: Callable[[str], None] = print) -> dict[str, Any]:
    x = synthetic_device(seconds)
    n_total = x.size
    frame = int(round(FRAME_S * FS_HZ))
    sos = design_bandpass(FS_HZ)

    def plain() -> None:
        ss.sosfilt(sos, x, axis=-1)

    def plain_frames() -> None:
        zi = np.zeros((sos.shape[0], N_CHANNELS, 2))
        for i in range(0, x.shape[1], frame):
            _, zi = ss.sosfilt(sos, x[:, i:i + frame], axis=-1, zi=zi)

    def chain_whole(mains: float | None, notch_max_hz: float | None = None) -> Callable[[], None]:
        def run() -> None:
            MultiChannelChain(ChainConfig(FS_HZ, N_CHANNELS, mains_hz=mains, notch_max_hz=notch_max_hz)).process(x)
        return run

    def chain_frames(mains: float | None) -> Callable[[], None]:
        def run() -> None:
            c = MultiChannelChain(ChainConfig(FS_HZ, N_CHANNELS, mains_hz=mains))
            for i in range(0, x.shape[1], frame):
                c.process(x[:, i:i + frame])
        return run

    cases: dict[str, tuple[Callable[[], None], int]] = {
        "plain_sosfilt_bandpass_whole": (plain, n_total),
        "plain_sosfilt_bandpass_50ms_frames": (plain_frames, n_total),
        "chain_50hz_whole": (chain_whole(50.0), n_total),
        "chain_50hz_50ms_frames": (chain_frames(50.0), n_total),
        "chain_60hz_whole": (chain_whole(60.0), n_total),
        "chain_60hz_50ms_frames": (chain_frames(60.0), n_total),
        "chain_60hz_notch_below_500hz_whole": (chain_whole(60.0, 500.0), n_total),
        "chain_no_notch_50ms_frames": (chain_frames(None), n_total),
    }
    results: dict[str, dict[str, float]] = {}
    for fn, _ in cases.values():
        fn()  # warm-up
    best: dict[str, list[float]] = {name: [float("inf"), float("inf")] for name in cases}
    for r in range(repeats):  # round-robin, so that load from other processes hits every case alike
        for name, (fn, _) in cases.items():
            cpu, wall = _best(fn, 1)
            best[name] = [min(best[name][0], cpu), min(best[name][1], wall)]
        echo(f"  round {r + 1}/{repeats} done")
    for name, (_, n) in cases.items():
        cpu, wall = best[name]
        results[name] = {"cpu_s": cpu, "wall_s": wall, "msamples_per_s_per_core": n / cpu / 1e6,
                         "msamples_per_s_wall": n / wall / 1e6}
    nk_info: dict[str, Any] = {}
    try:
        import neurokit2 as nk

        xs = x[:, : int(nk_seconds * FS_HZ)]

        def nk_run() -> None:
            with warnings.catch_warnings():  # "no events found" on quiet stretches
                warnings.simplefilter("ignore")
                for ch in xs:
                    nk.emg_process(ch, sampling_rate=int(FS_HZ))

        nk_run()
        cpu, wall = _best(nk_run, max(1, min(repeats, 2)))
        results["neurokit2_emg_process"] = {"cpu_s": cpu, "wall_s": wall, "msamples_per_s_per_core": xs.size / cpu / 1e6,
                                            "msamples_per_s_wall": xs.size / wall / 1e6}
        nk_info = {"neurokit2_version": nk.__version__, "neurokit2_seconds": nk_seconds}
    except ImportError:
        nk_info = {"neurokit2": "not installed (pip install .[test])"}
    plain_rate = results["plain_sosfilt_bandpass_whole"]["msamples_per_s_per_core"]
    ratios = {name: plain_rate / r["msamples_per_s_per_core"] for name, r in results.items() if name.startswith("chain")}
    frames_rate = results["chain_50hz_50ms_frames"]["msamples_per_s_per_core"]
    report = {
        "benchmark": "mimetic bench dsp",
        "signal": {"fs_hz": FS_HZ, "channels": N_CHANNELS, "seconds": seconds, "frame_s": FRAME_S,
                   "samples_total": n_total},
        "chain": "offset removal, 4th-order Butterworth 20-450 Hz band-pass (SOS), mains notch with all harmonics "
                 "below Nyquist (comb for 50 Hz at 2 kHz, 16 notch sections for 60 Hz), squaring, 100 ms moving RMS "
                 "every 10 ms, per-second quality windows (RMS, SD, mains ratio, <20 Hz ratio, flat, electrode off)",
        "results": results,
        "cost_ratio_vs_plain_bandpass_whole": ratios,
        "cost_ratio_frames_vs_plain_bandpass_frames": {
            name: results["plain_sosfilt_bandpass_50ms_frames"]["msamples_per_s_per_core"] / r["msamples_per_s_per_core"]
            for name, r in results.items() if name.startswith("chain") and name.endswith("frames")},
        "targets": {
            "frames_msamples_per_s_per_core": {"target": TARGET_FRAMES_MSPS, "measured": frames_rate,
                                               "met": frames_rate >= TARGET_FRAMES_MSPS},
            "chain_whole_cost_ratio": {"target": TARGET_RATIO, "measured": ratios["chain_50hz_whole"],
                                       "met": ratios["chain_50hz_whole"] <= TARGET_RATIO},
            "chain_frames_cost_ratio": {"target": TARGET_RATIO, "measured": ratios["chain_50hz_50ms_frames"],
                                        "met": ratios["chain_50hz_50ms_frames"] <= TARGET_RATIO},
        },
        "machine": {"python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
                    "cpu": _cpu_name(), "cpus": os.cpu_count(), "loadavg_1m": os.getloadavg()[0],
                    "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"), **nk_info},
        "timing": "per core = samples / process CPU time, best of repeats taken round-robin over the cases",
        "repeats": repeats,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    _print_table(report, echo)
    echo(f"wrote {out}")
    return report


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _print_table(rep: dict[str, Any], echo: Callable[[str], None]) -> None:
    plain = rep["results"]["plain_sosfilt_bandpass_whole"]["msamples_per_s_per_core"]
    echo(f"{'case':38s} {'Msamples/s/core':>16s} {'Msamples/s wall':>16s} {'cost vs plain':>14s}")
    for name, r in rep["results"].items():
        echo(f"{name:38s} {r['msamples_per_s_per_core']:16.2f} {r['msamples_per_s_wall']:16.2f} "
             f"{plain / r['msamples_per_s_per_core']:13.2f}x")
    for name, t in rep["targets"].items():
        cmp = ">=" if name.startswith("frames") else "<="
        echo(f"target {name}: {t['measured']:.2f} (want {cmp} {t['target']:g}) -> {'MET' if t['met'] else 'MISSED'}")

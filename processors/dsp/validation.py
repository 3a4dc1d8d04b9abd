"""Agreement of mimetic's envelope and onsets with the field's references,
NeuroKit2 (`emg_process`: clean, TKEO + low-pass amplitude, threshold activation)
and BioSPPy (`signals.emg.emg`: 100 Hz high-pass, 50 ms box smoother, onsets).

Both references are test-only dependencies (`pip install .[test]`); they are
imported lazily. `python -m processors.dsp.validation [DIR]` prints the README
table for the recordings in DIR (default: the repository's tests/data/emg, whose
3A* files are the first 10 s of the originals; see its README.md).

Measures:
* envelope r: Pearson correlation between our 100 ms RMS envelope and the
  reference amplitude (NeuroKit2 `EMG_Amplitude`; BioSPPy's smoothed rectified
  signal, as used by `find_onsets`), sampled at our envelope times;
* edge agreement: for each reference onset (NeuroKit2) / threshold crossing
  (BioSPPy reports rising and falling crossings alike, so we compare with our
  onsets and offsets together), the distance to our nearest one: median in ms,
  and the share within 100 ms;
* on synthetic bursts with known onsets: median |error| in ms of each method.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from processors.dsp.offline import process_signals

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "tests" / "data" / "emg"


@dataclass
class Agreement:
    name: str
    r_nk: float
    r_biosppy: float
    onset_med_ms_nk: float | None
    onset_within_100ms_nk: float | None
    n_ours: int
    n_nk: int
    edge_med_ms_biosppy: float | None
    edge_within_100ms_biosppy: float | None
    n_biosppy_edges: int


def _nearest_ms(ref_s: np.ndarray, ours_s: np.ndarray) -> np.ndarray:
    if ref_s.size == 0 or ours_s.size == 0:
        return np.zeros(0)
    ours_s = np.sort(ours_s)
    j = np.clip(np.searchsorted(ours_s, ref_s), 1, ours_s.size - 1) if ours_s.size > 1 else np.zeros(ref_s.size, int)
    d = np.abs(ours_s[j] - ref_s)
    if ours_s.size > 1:
        d = np.minimum(d, np.abs(ours_s[j - 1] - ref_s))
    return d * 1e3


def _references(x: np.ndarray, fs_hz: float) -> dict[str, Any]:
    import neurokit2 as nk
    from biosppy.signals import emg as bemg
    from biosppy.signals import tools as btools

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        signals, info = nk.emg_process(x, sampling_rate=int(round(fs_hz)))
        b = bemg.emg(signal=x, sampling_rate=fs_hz, show=False)
        box, _ = btools.smoother(signal=np.abs(b["filtered"]), kernel="boxzen", size=int(fs_hz * 0.05), mirror=True)
    return {"nk_amp": signals["EMG_Amplitude"].to_numpy(), "nk_on": np.asarray(info["EMG_Onsets"], dtype=float) / fs_hz,
            "nk_off": np.asarray(info["EMG_Offsets"], dtype=float) / fs_hz,
            "bs_env": np.asarray(box), "bs_edges": np.asarray(b["onsets"], dtype=float) / fs_hz}


def compare_signal(x: np.ndarray, fs_hz: float, name: str) -> Agreement:
    """Agreement figures for one channel (raw, any units)."""
    # whole-recording baseline: as the references' (NeuroKit2, BioSPPy) thresholds, which see it all
    res = process_signals(x[None, :], fs_hz, ["emg"], mains_hz="auto", baseline="whole-recording")
    ref = _references(x, fs_hz)
    t_env = res.timing.centre_s(np.arange(res.envelope.shape[1]))
    idx = np.clip(np.round(t_env * fs_hz).astype(int), 0, x.size - 1)
    ours = res.envelope[0]
    r_nk = float(np.corrcoef(ours, ref["nk_amp"][idx])[0, 1])
    r_bs = float(np.corrcoef(ours, ref["bs_env"][idx])[0, 1])
    on = np.array([a.onset_s for a in res.activations[0]])
    edges = np.concatenate([on, [a.offset_s for a in res.activations[0]]])
    d_nk = _nearest_ms(ref["nk_on"], on)
    d_bs = _nearest_ms(ref["bs_edges"], edges)
    return Agreement(name, r_nk, r_bs,
                     float(np.median(d_nk)) if d_nk.size else None, float(np.mean(d_nk < 100)) if d_nk.size else None,
                     int(on.size), int(ref["nk_on"].size),
                     float(np.median(d_bs)) if d_bs.size else None, float(np.mean(d_bs < 100)) if d_bs.size else None,
                     int(ref["bs_edges"].size))


def real_recordings(data_dir: Path) -> list[tuple[str, np.ndarray, float]]:
    from processors.recordings import load_recording

    out = []
    for p in sorted(data_dir.glob("*/*.txt")):
        rec = load_recording(p)
        for i, ch in enumerate(rec.channel_names):
            out.append((f"{p.parent.name}/{p.name}:{ch}", rec.samples_uv[i], rec.fs_hz))
    return out


def synthetic_truth(seeds: range = range(5), fs_hz: float = 1000.0) -> dict[str, Any]:
    """Onset errors (ms) vs known truth on synthetic bursts (SNR 10-25), per method."""
    import scipy.signal as ss

    errs: dict[str, list[float]] = {"mimetic": [], "neurokit2": [], "biosppy": []}
    found = {k: 0 for k in errs}
    total = 0
    r_nk, r_bs = [], []
    for seed in seeds:
        rng = np.random.default_rng(100 + seed)
        dur = 12.0
        onsets = np.sort(rng.uniform(1.0, dur - 2.0, size=4))
        onsets = onsets[np.concatenate([[True], np.diff(onsets) > 1.6])]
        bursts = [(float(o), float(o + rng.uniform(0.4, 1.2)), float(rng.uniform(50, 125))) for o in onsets]
        n = int(dur * fs_hz)
        sos = ss.butter(4, [30, 250], btype="bandpass", fs=fs_hz, output="sos")
        noise = ss.sosfilt(sos, rng.normal(size=n + 1000))[1000:]
        noise /= noise.std()
        t = np.arange(n) / fs_hz
        amp = np.full(n, 5.0)
        for on, off, a in bursts:
            amp[(t >= on) & (t < off)] = a
        x = noise * amp
        total += len(bursts)
        # bursts from 1 s on, inside the causal baseline's warm-up: the edge rule on a known-good baseline
        res = process_signals(x[None, :], fs_hz, ["emg"], mains_hz=None, baseline="whole-recording")
        ref = _references(x, fs_hz)
        t_env = res.timing.centre_s(np.arange(res.envelope.shape[1]))
        idx = np.clip(np.round(t_env * fs_hz).astype(int), 0, n - 1)
        r_nk.append(float(np.corrcoef(res.envelope[0], ref["nk_amp"][idx])[0, 1]))
        r_bs.append(float(np.corrcoef(res.envelope[0], ref["bs_env"][idx])[0, 1]))
        truth = np.array([b[0] for b in bursts])
        cands = {"mimetic": np.array([a.onset_s for a in res.activations[0]]), "neurokit2": ref["nk_on"],
                 "biosppy": ref["bs_edges"]}
        for k, c in cands.items():
            d = _nearest_ms(truth, c)
            ok = d < 200
            found[k] += int(ok.sum())
            errs[k] += d[ok].tolist()
    return {"bursts": total,
            "median_abs_error_ms": {k: float(np.median(v)) if v else None for k, v in errs.items()},
            "p90_abs_error_ms": {k: float(np.percentile(v, 90)) if v else None for k, v in errs.items()},
            "found_within_200ms": found,
            "envelope_r_nk_median": float(np.median(r_nk)), "envelope_r_biosppy_median": float(np.median(r_bs))}


def markdown(data_dir: Path) -> str:
    rows = [compare_signal(x, fs, name) for name, x, fs in real_recordings(data_dir)]

    def f(v: float | None, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    lines = ["| recording:channel | r vs NK2 | r vs BioSPPy | onsets ours / NK2 | NK2 onset → ours, median ms | within 100 ms | BioSPPy crossings → ours, median ms | within 100 ms |",
             "|---|---|---|---|---|---|---|---|"]
    for a in rows:
        lines.append(f"| {a.name} | {a.r_nk:.3f} | {a.r_biosppy:.3f} | {a.n_ours} / {a.n_nk} | {f(a.onset_med_ms_nk, '.0f')} | "
                     f"{f(a.onset_within_100ms_nk, '.0%')} | {f(a.edge_med_ms_biosppy, '.0f')} | {f(a.edge_within_100ms_biosppy, '.0%')} |")
    med = lambda v: float(np.median([x for x in v if x is not None]))  # noqa: E731
    lines.append(f"| **median of {len(rows)} channels** | **{med([a.r_nk for a in rows]):.3f}** | "
                 f"**{med([a.r_biosppy for a in rows]):.3f}** | | **{med([a.onset_med_ms_nk for a in rows]):.0f}** | "
                 f"**{med([a.onset_within_100ms_nk for a in rows]):.0%}** | **{med([a.edge_med_ms_biosppy for a in rows]):.0f}** | "
                 f"**{med([a.edge_within_100ms_biosppy for a in rows]):.0%}** |")
    syn = synthetic_truth()
    lines += ["", f"Synthetic bursts with known onsets ({syn['bursts']} bursts, 5 seeds, 1 kHz, rest 5 µV, bursts 50-125 µV):", "",
              "| method | found (within 200 ms) | median abs onset error, ms | 90th percentile, ms |", "|---|---|---|---|"]
    for k in ("mimetic", "neurokit2", "biosppy"):
        lines.append(f"| {k} | {syn['found_within_200ms'][k]} / {syn['bursts']} | {f(syn['median_abs_error_ms'][k], '.1f')} | "
                     f"{f(syn['p90_abs_error_ms'][k], '.1f')} |")
    lines.append(f"\nEnvelope correlation on the synthetic signals (median): {syn['envelope_r_nk_median']:.3f} vs NeuroKit2, "
                 f"{syn['envelope_r_biosppy_median']:.3f} vs BioSPPy.")
    try:
        sa = simulator_agreement()
        lines.append(f"\nAgainst the ingest simulator's ground truth (4 patients x 60 s, 8 facial channels at 2 kHz, "
                     f"mains hum, motion artefacts): asymmetry index per muscle and task, |error| median "
                     f"{sa['ai_median_abs_error']:.3f}, max {sa['ai_max_abs_error']:.3f} ({len(sa['ai'])} muscle-sessions); "
                     f"synkinesis index max |error| {sa['synkinesis_max_abs_error']:.3f} ({len(sa['synkinesis'])} pairs).")
    except ImportError:  # pragma: no cover
        pass
    return "\n".join(lines)


def simulator_agreement(patients: int = 4, seed: int = 11, duration_s: float = 60.0) -> dict[str, Any]:
    """End to end against the ingest simulator's ground truth (facial channels, both sides):
    frames -> µV -> `process_signals` -> per-task asymmetry index and synkinesis index,
    compared with the truth's `ai` and synkinesis `index`, both measured with the definitions of
    `processors.measures` (rest levels from the session's rest task). An undefined truth (no
    co-activation) counts as an error of 1 unless ours is undefined too. Needs `ingest.simulator`."""
    from ingest import wire
    from ingest.simulator import Simulation

    from mimetic.domain import MUSCLES, Side
    from processors.dsp.synkinesis import synkinesis
    from processors.measures import asymmetry_index, pair_active, rest_level_uv, window_level_uv

    sim = Simulation(patients=patients, sessions=1, duration_s=duration_s, fs_hz=2000, channels=8, seed=seed,
                     fault_prob=0.0, therapy_types=("biofeedback_exercise",))
    names = [f"{e['muscle']}_{e['side']}" for e in sorted(sim.channel_map, key=lambda e: e["channel"])]
    ai_rows, syn_rows = [], []
    for i in range(patients):
        frames = sorted((r.item for r in sim.device_records(i) if r.kind == wire.KIND_FRAME), key=lambda f: f.seq)
        x = np.concatenate([f.samples.astype(np.float64) * f.scale_uv for f in frames], axis=-1)
        truth = sim.truth()["patients"][i]
        sess = truth["sessions"][0]
        res = process_signals(x, 2000.0, names, mains_hz="auto")
        t = res.timing.centre_s(np.arange(res.envelope.shape[1]))
        idx = {n: k for k, n in enumerate(names)}
        # each channel's rest level: the RMS of its envelope in the session's rest task
        rest = np.zeros(t.size, dtype=bool)
        for w in sess["tasks"]:
            if w["task"] == "rest":
                rest |= (t >= w["start_s"]) & (t < w["stop_s"])
        for m, tm in sess["muscles"].items():
            wins = [(w["start_s"], w["stop_s"]) for w in sess["tasks"] if w["task"] == MUSCLES[m]]
            # all repetitions of the muscle's task together, as the truth does
            sel = np.zeros(t.size, dtype=bool)
            for a, b in wins:
                sel |= (t >= a) & (t < b)
            el, er = res.envelope[idx[f"{m}_L"]], res.envelope[idx[f"{m}_R"]]
            rl, rr = rest_level_uv(el[rest]), rest_level_uv(er[rest])
            lm, rm = window_level_uv(el[sel], rl), window_level_uv(er[sel], rr)
            ai = float(asymmetry_index(lm, rm)) if pair_active(lm, rm, rl, rr) else float("nan")
            if tm["ai"] is None:
                continue
            ai_rows.append({"patient": i, "muscle": m, "truth": tm["ai"], "mimetic": float(ai),
                            "error": float(ai - tm["ai"])})
        aff = Side(truth["affected_side"]) if "affected_side" in truth else None
        for s in sess["synkinesis"]:
            if aff is None:
                break
            wins = [(w["start_s"], w["stop_s"]) for w in sess["tasks"] if w["task"] == s["target_task"]]
            env = {side: res.envelope[idx[f"{s['muscle']}_{side}"]] for side in ("L", "R")}
            rests = {side: rest_level_uv(env[side][rest]) for side in ("L", "R")}
            r = synkinesis(s["target_task"], s["muscle"], aff, t, env, {"L": wins, "R": wins}, rests)
            ours = float("nan") if r.index is None else r.index
            if s["index"] is None:  # no co-activation: the measure must be undefined too
                syn_rows.append({"patient": i, "task": s["target_task"], "muscle": s["muscle"],
                                 "present": s["present"], "truth": None, "mimetic": r.index,
                                 "error": 0.0 if r.index is None else 1.0})
                continue
            syn_rows.append({"patient": i, "task": s["target_task"], "muscle": s["muscle"], "present": s["present"],
                             "truth": s["index"], "mimetic": ours, "error": ours - s["index"]})
    errs = np.abs([r["error"] for r in ai_rows])
    serrs = np.abs([r["error"] for r in syn_rows]) if syn_rows else np.zeros(0)
    return {"ai": ai_rows, "synkinesis": syn_rows, "ai_max_abs_error": float(errs.max()),
            "ai_median_abs_error": float(np.median(errs)),
            "synkinesis_max_abs_error": float(serrs.max()) if serrs.size else None}


if __name__ == "__main__":  # pragma: no cover
    import sys

    print(markdown(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DATA_DIR))

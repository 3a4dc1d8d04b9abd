"""Body of `mimetic dsp FILE`: load, process, print (table or JSON), plot."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from processors.recordings import RecordingError, load_recording


class DspUsageError(ValueError):
    """Bad option values; reported like a bad file (one line, exit 2)."""


def parse_notch(value: str) -> float | None | str:
    v = value.strip().lower()
    if v == "auto":
        return "auto"
    if v in ("off", "none", "0"):
        return None
    try:
        f = float(v)
    except ValueError:
        raise DspUsageError(f"--notch must be 50, 60, auto or off, not {value!r}") from None
    if f <= 0:
        raise DspUsageError(f"--notch must be positive, not {value!r}")
    return f


def run_dsp(path: Path, *, fs_hz: float | None, band_hz: tuple[float, float], notch: str, window_s: float,
            hop_s: float, k: float, affected: str | None, as_json: bool, plot: Path | None,
            min_on_s: float = 0.05, min_off_s: float = 0.1, baseline: str = "causal") -> dict[str, Any]:
    """Process one recording; raises RecordingError / DspUsageError with one-line messages."""
    from processors.dsp.offline import plot_result, process_signals

    mains = parse_notch(notch)
    if not (0 < band_hz[0] < band_hz[1]):
        raise DspUsageError(f"--band must be LOW HIGH with 0 < LOW < HIGH, not {band_hz}")
    if window_s <= 0 or hop_s <= 0:
        raise DspUsageError("--window-s and --hop-s must be positive")
    if min_on_s < 0 or min_off_s <= 0 or k <= 0:
        raise DspUsageError("--min-on-s must be >= 0, --min-off-s and --k > 0")
    if baseline not in ("causal", "whole-recording"):
        raise DspUsageError(f"--baseline must be causal or whole-recording, not {baseline!r}")
    if affected not in (None, "L", "R"):
        raise DspUsageError("--affected must be L or R")
    rec = load_recording(path, fs_hz)
    if band_hz[0] >= 0.95 * rec.fs_hz / 2:
        raise DspUsageError(f"--band {band_hz[0]:g} Hz is above Nyquist of fs={rec.fs_hz:g} Hz")
    if rec.n_samples < max(rec.fs_hz * window_s, 16):
        raise RecordingError(f"{path.name}: {rec.n_samples} samples, shorter than one envelope window")
    extra = {"file": path.name, "format": rec.source_format, "source_units": rec.source_units,
             "calibrated": rec.calibrated,
             "units_label": "µV" if rec.calibrated else rec.source_units}
    res = process_signals(rec.samples_uv, rec.fs_hz, rec.channel_names, band_hz=band_hz, mains_hz=mains,
                          window_s=window_s, hop_s=hop_s, k=k, min_on_s=min_on_s, min_off_s=min_off_s,
                          affected=affected, extra=extra, baseline=baseline,
                          calibrated=rec.calibrated)
    if plot is not None:
        plot_result(res, str(plot), title=path.name)
    rep = res.report
    if as_json:
        json.dump(rep, sys.stdout, allow_nan=False)
        sys.stdout.write("\n")
    else:
        print_summary(rep)
    return rep


def print_summary(rep: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    c = Console()
    notch = f"{rep['notch_hz']:g} Hz + harmonics" if rep["notch_hz"] else "none"
    c.print(f"{rep['file']}: {rep['format']}, fs {rep['fs_hz']:g} Hz, {rep['duration_s']:.2f} s, "
            f"units {escape(rep['units_label'])}, band {rep['band_hz'][0]:g}-{rep['band_hz'][1]:g} Hz, notch {notch}, "
            f"envelope {rep['window_s'] * 1e3:.0f} ms RMS @ {rep['envelope_fs_hz']:g} Hz")
    u = escape(rep["units_label"])
    t = Table("channel", f"rest\n\\[{u}]", f"thresh.\n\\[{u}]", "acts", f"max peak\n\\[{u}]", "MDF\n\\[Hz]",
              "SNR\n\\[dB]", "mains\npower", "<20 Hz\npower", "flat", "stim\npulses")
    t.columns[0].no_wrap = True
    t.columns[0].min_width = max(len(ch["name"]) for ch in rep["channels"])
    for ch in rep["channels"]:
        q = ch["quality"]
        peak = max((a["peak_uv"] for a in ch["activations"]), default=None)
        t.add_row(ch["name"], f"{ch['baseline']['mean_uv']:.3g}", f"{ch['baseline']['threshold_uv']:.3g}",
                  str(len(ch["activations"])), "-" if peak is None else f"{peak:.3g}",
                  "-" if ch["median_freq_hz"] is None else f"{ch['median_freq_hz']:.1f}",
                  "-" if q["snr_db"] is None else f"{q['snr_db']:.1f}",
                  "-" if q["mains_power_ratio"] is None else f"{q['mains_power_ratio']:.3f}",
                  "-" if q["motion_power_ratio"] is None else f"{q['motion_power_ratio']:.3f}",
                  f"{q['flat_fraction']:.3f}", str(q["stim_pulses"]))
    c.print(t)
    if rep["pairs"]:
        pt = Table("muscle", "AI (L-R)/(L+R)", "ratio affected/healthy", "affected side", "active s")
        for p in rep["pairs"]:
            pt.add_row(p["muscle"], "undefined" if p["asymmetry_index"] is None else f"{p['asymmetry_index']:+.3f}",
                       "undefined" if p["ratio"] is None else f"{p['ratio']:.3f}", p["affected_side"], f"{p['active_s']:.1f}")
        c.print(pt)
    else:
        c.print("no left/right muscle pairs in this recording")

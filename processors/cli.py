"""Commands of the processors package: `mimetic dsp FILE` and `mimetic bench dsp`.

Thin on purpose: the work lives in processors.dsp.command / processors.dsp.bench.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def _die(msg: str, code: int = 2) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(code)


def dsp_cmd(
    file: Annotated[Path, typer.Argument(help="CSV (<muscle>_<L|R> columns, optional time_s), BioSPPy text, UCI lower-limb text, EDF/BDF")],
    fs: Annotated[float | None, typer.Option("--fs", help="Sampling rate \\[Hz] (needed for CSV without time_s)")] = None,
    band: Annotated[tuple[float, float], typer.Option("--band", help="Band-pass edges \\[Hz]")] = (20.0, 450.0),
    notch: Annotated[str, typer.Option("--notch", help="Mains notch + harmonics: 50, 60, auto (detect) or off")] = "auto",
    window_s: Annotated[float, typer.Option("--window-s", help="RMS envelope window \\[s]")] = 0.1,
    hop_s: Annotated[float, typer.Option("--hop-s", help="RMS envelope hop \\[s] (envelope rate = 1/hop)")] = 0.01,
    k: Annotated[float, typer.Option("--k", help="Activation threshold = rest mean + k*SD")] = 3.0,
    min_on_s: Annotated[float, typer.Option("--min-on-s", help="Shortest activation kept \\[s]")] = 0.05,
    min_off_s: Annotated[float, typer.Option("--min-off-s", help="Shorter dips below threshold are bridged \\[s]")] = 0.1,
    baseline: Annotated[str, typer.Option("--baseline", help="Activation baseline: causal (the live worker's: quietest 1 s so far) or whole-recording")] = "causal",
    affected: Annotated[str | None, typer.Option("--affected", help="Affected side L or R (default: the weaker side per pair)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a PNG of signal, envelope and activations")] = None,
) -> None:
    """Offline sEMG processing of one recording: envelope, activations, balance, quality."""
    from processors.dsp.command import DspUsageError, run_dsp
    from processors.recordings import RecordingError

    try:
        run_dsp(file, fs_hz=fs, band_hz=band, notch=notch, window_s=window_s, hop_s=hop_s, k=k,
                affected=affected, as_json=as_json, plot=plot, min_on_s=min_on_s, min_off_s=min_off_s, baseline=baseline)
    except (RecordingError, DspUsageError) as exc:
        _die(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


def bench_dsp_cmd(
    out: Annotated[Path, typer.Option("--out", help="JSON result file")] = Path("bench/results/dsp.json"),
    seconds: Annotated[float, typer.Option("--seconds", help="Signal length \\[s]")] = 60.0,
    repeats: Annotated[int, typer.Option("--repeats", help="Best of N runs")] = 5,
    nk_seconds: Annotated[float, typer.Option("--nk-seconds", help="Seconds of the signal given to NeuroKit2 (slow)")] = 5.0,
) -> None:
    """DSP chain throughput: 8 channels at 2 kHz, 50 ms frames and whole signal, vs plain sosfilt and NeuroKit2."""
    from processors.dsp.bench import run_bench

    run_bench(out, seconds=seconds, repeats=repeats, nk_seconds=nk_seconds, echo=typer.echo)


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    app.command("dsp")(dsp_cmd)
    bench_app.command("dsp")(bench_dsp_cmd)

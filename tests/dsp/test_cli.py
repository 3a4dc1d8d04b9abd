"""`mimetic dsp` on every real recording, on CSV/EDF files written here, and on bad files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from processors.cli import register
from processors.recordings import RecordingError, load_recording

from .synth import DATA_DIR, burst_signal, real_files

FS = 1000.0


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app, bench = typer.Typer(), typer.Typer()
    app.add_typer(bench, name="bench")
    register(app, bench)
    return app


def run(app: typer.Typer, *args: str):
    return CliRunner().invoke(app, ["dsp", *args])


def check_schema(rep: dict, n_channels: int) -> None:
    assert isinstance(rep["fs_hz"], float) and rep["envelope_fs_hz"] == pytest.approx(rep["fs_hz"] / round(rep["fs_hz"] * 0.01))
    assert len(rep["channels"]) == n_channels
    for ch in rep["channels"]:
        assert {"name", "envelope_uv", "activations", "median_freq_hz", "quality"} <= set(ch)
        assert len(ch["envelope_uv"]) == (rep["n_samples"] - round(rep["fs_hz"] * 0.1)) // round(rep["fs_hz"] * 0.01) + 1
        assert all(np.isfinite(ch["envelope_uv"]))
        for a in ch["activations"]:
            assert {"onset_s", "offset_s", "peak_uv"} <= set(a) and a["offset_s"] >= a["onset_s"]
        assert ch["median_freq_hz"] is None or 20 <= ch["median_freq_hz"] <= 450
        assert {"noise_floor_uv", "snr_db", "mains_power_ratio", "clipping_fraction", "flat_fraction",
                "electrode_off", "motion_power_ratio", "stim_pulses"} <= set(ch["quality"])
    for p in rep["pairs"]:
        assert {"muscle", "asymmetry_index", "ratio"} <= set(p)


def test_real_data_present() -> None:
    assert len(real_files()) == 8, f"expected the recordings in {DATA_DIR}"


@pytest.mark.parametrize("path", real_files(), ids=lambda p: p.name)
def test_dsp_on_every_real_recording(app: typer.Typer, path: Path) -> None:
    r = run(app, str(path), "--json")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    n = 1 if path.parent.name == "biosppy" else 4
    check_schema(rep, n)
    assert rep["pairs"] == []  # no left/right pairs in these sets
    assert sum(len(c["activations"]) for c in rep["channels"]) >= 1
    if path.parent.name == "uci-lower-limb":
        assert rep["source_units"] == "mv" and rep["calibrated"] is True
        assert [c["name"] for c in rep["channels"]] == ["rectus_femoris", "biceps_femoris", "vastus_medialis", "semitendinosus"]
    else:
        assert rep["calibrated"] is False


def test_biosppy_emg1_bursts_found(app: typer.Typer) -> None:
    """The README's clear bursts (1.4, 15.4, 25.6 s): the causal baseline (the default, the live
    worker's) detects from the third second on; the whole-recording one sees the first burst too."""
    path = str(DATA_DIR / "biosppy" / "emg_1.txt")
    rep = json.loads(run(app, path, "--json").stdout)
    assert rep["notch_hz"] == 50.0  # the 50 Hz line of this file is detected
    assert rep["baseline"] == "causal"
    onsets = [a["onset_s"] for a in rep["channels"][0]["activations"]]
    assert min(onsets) > 3.0
    for burst_s in (15.4, 25.6):
        assert any(abs(o - burst_s) < 0.3 for o in onsets), (burst_s, onsets)
    whole = json.loads(run(app, path, "--json", "--baseline", "whole-recording").stdout)
    assert whole["baseline"] == "whole-recording"
    onsets = [a["onset_s"] for a in whole["channels"][0]["activations"]]
    for burst_s in (1.4, 15.4, 25.6):
        assert any(abs(o - burst_s) < 0.3 for o in onsets), (burst_s, onsets)


def test_uci_reader_details() -> None:
    rec = load_recording(DATA_DIR / "uci-lower-limb" / "5Nmar.txt")
    assert rec.n_samples == 6563 and rec.fs_hz == 1000.0 and "knee_angle" in rec.aux
    raw = np.genfromtxt(DATA_DIR / "uci-lower-limb" / "5Nmar.txt", skip_header=7, delimiter="\t")
    np.testing.assert_allclose(rec.samples_uv[:, :10], raw[:10, :4].T * 1000.0)


def write_pair_csv(path: Path, with_time: bool) -> None:
    rng = np.random.default_rng(11)
    left = burst_signal(FS, 5.0, [(1.0, 2.0, 60.0), (3.0, 4.0, 60.0)], 3.0, rng)
    right = burst_signal(FS, 5.0, [(1.0, 2.0, 100.0), (3.0, 4.0, 100.0)], 3.0, rng)
    cols = ["zygomaticus_L", "zygomaticus_R", "frontalis_L"]
    data = np.vstack([left, right, burst_signal(FS, 5.0, [], 3.0, rng)]).T
    if with_time:
        cols = ["time_s"] + cols
        data = np.column_stack([np.arange(data.shape[0]) / FS, data])
    np.savetxt(path, data, delimiter=",", header=",".join(cols), comments="", fmt="%.6f")


@pytest.mark.parametrize("with_time", [True, False])
def test_dsp_on_written_csv(app: typer.Typer, tmp_path: Path, with_time: bool) -> None:
    path = tmp_path / "session.csv"
    write_pair_csv(path, with_time)
    # bursts from the first second on: the whole-recording baseline (the causal one detects from 3 s)
    args = [str(path), "--json", "--baseline", "whole-recording"] + ([] if with_time else ["--fs", "1000"])
    r = run(app, *args)
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    check_schema(rep, 3)
    assert rep["fs_hz"] == pytest.approx(1000.0)
    (pair,) = rep["pairs"]
    assert pair["muscle"] == "zygomaticus" and pair["affected_side"] == "L"
    assert pair["asymmetry_index"] == pytest.approx(-0.25, abs=0.03)  # (60-100)/(60+100)
    assert pair["ratio"] == pytest.approx(0.6, abs=0.04)
    acts = rep["channels"][0]["activations"]
    assert [round(a["onset_s"], 1) for a in acts] == [1.0, 3.0]


def test_dsp_on_written_edf_and_plot(app: typer.Typer, tmp_path: Path) -> None:
    import pyedflib

    rng = np.random.default_rng(12)
    sig = [burst_signal(FS, 6.0, [(3.5, 4.5, 80.0)], 4.0, rng), burst_signal(FS, 6.0, [(3.5, 4.5, 40.0)], 4.0, rng)]
    path = tmp_path / "rec.edf"
    w = pyedflib.EdfWriter(str(path), 2, file_type=pyedflib.FILETYPE_EDFPLUS)
    hdrs = []
    for name, s in zip(["orbicularis_oris_L", "orbicularis_oris_R"], sig):
        hdrs.append({"label": name[:16], "transducer": name, "dimension": "uV", "sample_frequency": FS, "physical_max": 2000.0,
                     "physical_min": -2000.0, "digital_max": 32767, "digital_min": -32768})
    w.setSignalHeaders(hdrs)
    w.writeSamples(sig)
    w.close()
    rec = load_recording(path)
    assert rec.channel_names == ["orbicularis_oris_L", "orbicularis_oris_R"] and rec.fs_hz == FS
    np.testing.assert_allclose(rec.samples_uv[0], sig[0], atol=0.1)
    png = tmp_path / "out.png"
    r = run(app, str(path), "--json", "--plot", str(png), "--notch", "60", "--band", "10", "400", "--window-s", "0.05")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["notch_hz"] == 60.0 and rep["band_hz"] == [10.0, 400.0] and rep["window_s"] == 0.05
    (pair,) = rep["pairs"]
    assert pair["asymmetry_index"] == pytest.approx(1 / 3, abs=0.03) and pair["affected_side"] == "R"
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    text = run(app, str(path))  # the human summary
    assert text.exit_code == 0 and "orbicularis_oris" in text.stdout


BAD = {
    "empty.csv": ("", "empty"),
    "header_only.csv": ("zygomaticus_L,zygomaticus_R\n", "no samples"),
    "wrong_columns.csv": ("left,right\n1,2\n3,4\n", "<muscle>_<L|R>"),
    "nan.csv": ("time_s,zygomaticus_L\n0,1\n0.001,nan\n0.002,3\n", "NaN"),
    "hole.csv": ("time_s,zygomaticus_L\n0,1\n0.001,\n0.002,3\n", "NaN"),
    "text.csv": ("time_s,zygomaticus_L\n0,1\n0.001,abc\n", "non-numeric"),
    "no_rate.csv": ("zygomaticus_L\n1\n2\n3\n", "sampling rate"),
    "no_rate.txt": ("# Simple Text Format\n# Labels:= EMG\n1\n2\n", "Sampling Rate"),
    "nan.txt": ("# Sampling Rate (Hz):= 1000.00\n1\nnan\n2\n", "NaN"),
    "ragged.csv": ("time_s,zygomaticus_L\n0,1\n0.001,2,5\n", "fields"),
    "bad.edf": ("0       this is not an edf file", "EDF"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_files_exit_2_with_one_line(app: typer.Typer, tmp_path: Path, name: str) -> None:
    content, needle = BAD[name]
    path = tmp_path / name
    path.write_text(content)
    r = run(app, str(path), "--json")
    assert r.exit_code == 2, r.output
    err = r.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err and needle.lower() in err.lower(), err
    assert r.stdout == ""
    with pytest.raises(RecordingError):
        load_recording(path, 1000.0 if name.startswith("no_rate") is False else None)


def test_missing_file_and_bad_options(app: typer.Typer, tmp_path: Path) -> None:
    r = run(app, str(tmp_path / "nope.csv"))
    assert r.exit_code == 2 and "no such file" in r.stderr
    good = DATA_DIR / "biosppy" / "emg.txt"
    for args in (["--notch", "55x"], ["--band", "300", "100"], ["--window-s", "0"], ["--affected", "X"]):
        r = run(app, str(good), *args)
        assert r.exit_code == 2 and r.stderr.count("\n") == 1, (args, r.stderr)


def test_real_mimetic_entry_point() -> None:
    """The installed `mimetic dsp` (whole CLI with every feature registered)."""
    exe = Path(sys.executable).parent / "mimetic"
    r = subprocess.run([str(exe), "dsp", str(DATA_DIR / "biosppy" / "emg.txt"), "--json"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    check_schema(json.loads(r.stdout), 1)
    r = subprocess.run([str(exe), "dsp", "/nonexistent.csv"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0


def test_bench_dsp_writes_json(app: typer.Typer, tmp_path: Path) -> None:
    out = tmp_path / "dsp.json"
    r = CliRunner().invoke(app, ["bench", "dsp", "--out", str(out), "--seconds", "1", "--repeats", "1",
                                 "--nk-seconds", "0.5"])
    assert r.exit_code == 0, r.output
    rep = json.loads(out.read_text())
    assert {"chain_50hz_whole", "chain_50hz_50ms_frames", "plain_sosfilt_bandpass_whole",
            "neurokit2_emg_process"} <= set(rep["results"])
    assert rep["signal"] == {"fs_hz": 2000.0, "channels": 8, "seconds": 1.0, "frame_s": 0.05, "samples_total": 16000}
    assert "target frames_msamples_per_s_per_core" in r.stdout  # the printed table (no timed assertion)

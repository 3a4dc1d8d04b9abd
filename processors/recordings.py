"""Reading sEMG recordings from files into one in-memory shape.

    load_recording(path, fs_hz=None) -> Recording

Stable API (also used by `mimetic replay`). Formats, detected from content/suffix:

* CSV with a header row: one column per channel named `<muscle>_<L|R>`
  (e.g. `zygomaticus_L`), values in µV, plus an optional `time_s` column (the
  sampling rate is derived from it); without it pass `fs_hz`.
* BioSPPy "Simple Text Format": `#` header lines including
  `Sampling Rate (Hz):= 1000.00`, then one sample per line (or one column per
  channel). Values are raw ADC codes: kept as they are, `calibrated=False`.
* UCI "EMG dataset in Lower Limb" text: 7 header lines (`File Name:`, then
  `Channel k: 'name', N values, engineering units: mV, ...`), tab-separated.
  EMG channels are converted mV -> µV; non-EMG channels (the knee angle, unit
  deg) are kept out of `samples_uv` and returned in `aux`. fs = 1000 Hz unless
  `fs_hz` is given. Trailing rows with empty EMG fields are dropped.
* EDF/EDF+/BDF via pyedflib: physical values, converted from uV/mV/V to µV;
  all signals must share one sampling rate. Channel names come from the label,
  or from the transducer field when only that one is `<muscle>_<L|R>` (EDF
  labels are limited to 16 characters).

Any problem raises `RecordingError` with a one-line message.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mimetic.domain import parse_channel_name

UNIT_TO_UV = {"uv": 1.0, "µv": 1.0, "μv": 1.0, "mv": 1e3, "v": 1e6}

#: UCI lower-limb channel names (both header styles) -> mimetic channel names
UCI_NAMES = {
    "rf": "rectus_femoris", "recto femoral": "rectus_femoris",
    "bf": "biceps_femoris", "biceps femoral": "biceps_femoris",
    "vm": "vastus_medialis", "vasto medial": "vastus_medialis",
    "st": "semitendinosus", "emg semitendinoso": "semitendinosus",
    "fx": "knee_angle", "flexo-extension": "knee_angle",
}


class RecordingError(ValueError):
    """A recording file that cannot be read; the message is one line."""


@dataclass
class Recording:
    """A multi-channel recording in memory.

    samples_uv: float64 (n_channels, n_samples). In µV when `calibrated`, else in
    `source_units` unchanged (e.g. ADC codes, where no gain is known).
    """

    fs_hz: float
    channel_names: list[str]
    samples_uv: np.ndarray
    source_units: str
    calibrated: bool = True
    source_format: str = ""
    aux: dict[str, np.ndarray] = field(default_factory=dict)  # non-EMG channels (same rate)

    @property
    def n_channels(self) -> int:
        return self.samples_uv.shape[0]

    @property
    def n_samples(self) -> int:
        return self.samples_uv.shape[1]

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.fs_hz


def _check(samples: np.ndarray, where: str) -> np.ndarray:
    if samples.ndim != 2 or samples.shape[1] == 0 or samples.shape[0] == 0:
        raise RecordingError(f"{where}: no samples")
    bad = ~np.isfinite(samples)
    if bad.any():
        ch, i = np.argwhere(bad)[0]
        raise RecordingError(f"{where}: {int(bad.sum())} NaN/non-numeric values (first in channel {ch} at sample {i})")
    return np.ascontiguousarray(samples, dtype=np.float64)


def _check_fs(fs_hz: float | None, where: str) -> float:
    if fs_hz is None:
        raise RecordingError(f"{where}: sampling rate unknown: add a time_s column or pass --fs")
    if not np.isfinite(fs_hz) or fs_hz <= 0:
        raise RecordingError(f"{where}: invalid sampling rate {fs_hz}")
    return float(fs_hz)


def _read_csv(path: Path, text: str, fs_hz: float | None) -> Recording:
    rows = list(csv.reader(io.StringIO(text)))
    rows = [r for r in rows if r and any(c.strip() for c in r)]
    if not rows:
        raise RecordingError(f"{path.name}: empty file")
    header = [h.strip() for h in rows[0]]
    body = rows[1:]
    if not body:
        raise RecordingError(f"{path.name}: header but no samples")
    time_col = header.index("time_s") if "time_s" in header else None
    names = [h for i, h in enumerate(header) if i != time_col]
    bad = []
    for h in names:
        try:
            parse_channel_name(h)
        except ValueError:
            bad.append(h)
    if bad or not names:
        raise RecordingError(f"{path.name}: columns must be <muscle>_<L|R> (plus optional time_s); bad: {', '.join(bad) or 'none'}")
    if len(set(names)) != len(names):
        raise RecordingError(f"{path.name}: duplicate channel columns")
    widths = {len(r) for r in body}
    if widths != {len(header)}:
        bad_row = next(i for i, r in enumerate(body) if len(r) != len(header))
        raise RecordingError(f"{path.name}: rows do not all have {len(header)} fields (data row {bad_row + 1})")
    try:
        data = np.array(body, dtype=np.float64)  # fast path
    except ValueError:
        try:
            data = np.array([[float(c) if c.strip() else np.nan for c in r] for r in body], dtype=np.float64)
        except ValueError as exc:
            raise RecordingError(f"{path.name}: non-numeric value ({exc})") from None
    if time_col is not None:
        t = data[:, time_col]
        if not np.isfinite(t).all():
            raise RecordingError(f"{path.name}: NaN in time_s")
        dt = np.diff(t)
        if t.size < 2 or (dt <= 0).any():
            raise RecordingError(f"{path.name}: time_s must increase (and have at least 2 rows)")
        fs_t = 1.0 / float(np.median(dt))
        if np.max(np.abs(dt - 1.0 / fs_t)) > 0.01 / fs_t:
            raise RecordingError(f"{path.name}: time_s is not evenly spaced")
        fs_hz = fs_hz or fs_t
        data = np.delete(data, time_col, axis=1)
    fs = _check_fs(fs_hz, path.name)
    return Recording(fs, names, _check(data.T, path.name), "uV", True, "csv")


def _read_biosppy(path: Path, text: str, fs_hz: float | None) -> Recording:
    header = [ln[1:].strip() for ln in text.splitlines() if ln.startswith("#")]
    fs = fs_hz
    labels: list[str] = []
    for h in header:
        m = re.match(r"sampling rate\s*\(hz\)\s*:=\s*([0-9.eE+-]+)", h, re.I)
        if m and fs is None:
            fs = float(m.group(1))
        m = re.match(r"labels\s*:=\s*(.*)", h, re.I)
        if m:
            labels = [s for s in re.split(r"[\s,;]+", m.group(1).strip()) if s]
    fs = _check_fs(fs, path.name + " (no 'Sampling Rate (Hz):=' header)" if fs is None else path.name)
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    try:
        data = np.array([[float(v) for v in ln.split()] for ln in lines], dtype=np.float64)
    except ValueError as exc:
        raise RecordingError(f"{path.name}: non-numeric value ({exc})") from None
    if data.size == 0:
        raise RecordingError(f"{path.name}: no samples")
    data = data.reshape(len(lines), -1)
    n_ch = data.shape[1]
    if len(labels) != n_ch:
        labels = [f"emg{i}" if n_ch > 1 else "emg" for i in range(n_ch)]
    names = [lab.lower() for lab in labels]
    return Recording(fs, names, _check(data.T, path.name), "adc_counts", False, "biosppy_text")


_UCI_CH = re.compile(r"^Channel\s+\d+:\s*'([^']*)'.*engineering units:\s*([^,]+),", re.I)


def _read_uci(path: Path, text: str, fs_hz: float | None) -> Recording:
    lines = text.splitlines()
    chans = []
    for ln in lines[1:7]:
        m = _UCI_CH.match(ln.strip())
        if m:
            chans.append((m.group(1).strip(), m.group(2).strip().lower()))
    if not chans:
        raise RecordingError(f"{path.name}: UCI header without channel lines")
    body = [ln for ln in lines[1 + len(chans):] if ln.strip("\t \r")]
    rows = [ln.rstrip("\r").split("\t") for ln in body]
    n = len(chans)
    data = np.full((len(rows), n), np.nan)
    for i, r in enumerate(rows):
        for j in range(min(n, len(r))):
            v = r[j].strip()
            if v:
                try:
                    data[i, j] = float(v)
                except ValueError:
                    raise RecordingError(f"{path.name}: non-numeric value {v!r} at data row {i + 1}") from None
    emg_idx = [j for j, (_, u) in enumerate(chans) if u in UNIT_TO_UV]
    aux_idx = [j for j in range(n) if j not in emg_idx]
    if not emg_idx:
        raise RecordingError(f"{path.name}: no channel in uV/mV/V")
    emg = data[:, emg_idx]
    # drop trailing rows whose EMG fields are all empty (the files end with such rows)
    filled = np.isfinite(emg).any(axis=1)
    last = int(np.flatnonzero(filled)[-1]) + 1 if filled.any() else 0
    data, emg = data[:last], emg[:last]
    names = []
    for j in emg_idx:
        raw = chans[j][0].lower()
        names.append(UCI_NAMES.get(raw, re.sub(r"[^a-z0-9]+", "_", raw).strip("_") or f"ch{j}"))
    scale = np.array([UNIT_TO_UV[chans[j][1]] for j in emg_idx])
    samples = _check((emg * scale).T, path.name)
    aux = {UCI_NAMES.get(chans[j][0].lower(), f"aux{j}"): data[:, j] for j in aux_idx}
    return Recording(_check_fs(fs_hz or 1000.0, path.name), names, samples, chans[emg_idx[0]][1], True, "uci_lower_limb", aux)


def _edf_name(label: str, transducer: str) -> str:
    """EDF labels hold 16 characters (`orbicularis_oculi_L` has 19): when the label is
    not `<muscle>_<L|R>` but the transducer field is, the transducer field names the channel."""
    for cand in (label, transducer):
        try:
            parse_channel_name(cand)
            return cand
        except ValueError:
            pass
    return label


def _read_edf(path: Path, fs_hz: float | None) -> Recording:
    import pyedflib

    try:
        f = pyedflib.EdfReader(str(path))
    except Exception as exc:  # pyedflib raises OSError with a multi-line text
        raise RecordingError(f"{path.name}: not a readable EDF/BDF file ({str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__})") from None
    try:
        n = f.signals_in_file
        if n == 0:
            raise RecordingError(f"{path.name}: no signals")
        rates = {float(f.getSampleFrequency(i)) for i in range(n)}
        if len(rates) != 1:
            raise RecordingError(f"{path.name}: signals have different sampling rates {sorted(rates)}")
        names, rows, units = [], [], set()
        for i in range(n):
            dim = f.getPhysicalDimension(i).strip().lower().replace("μ", "u").replace("µ", "u")
            scale = UNIT_TO_UV.get(dim)
            if scale is None:
                raise RecordingError(f"{path.name}: signal {f.getLabel(i)!r} has unit {dim!r}, expected uV/mV/V")
            units.add(dim)
            names.append(_edf_name(f.getLabel(i).strip(), f.getTransducer(i).strip()))
            rows.append(f.readSignal(i) * scale)
        fs = fs_hz or rates.pop()
    finally:
        f.close()
    if len(set(names)) != len(names):
        raise RecordingError(f"{path.name}: duplicate channel labels {names}")
    lens = {r.size for r in rows}
    if len(lens) != 1:
        raise RecordingError(f"{path.name}: signals differ in length")
    return Recording(_check_fs(fs, path.name), names, _check(np.vstack(rows), path.name),
                     "/".join(sorted(units)), True, "edf")


def load_recording(path: str | Path, fs_hz: float | None = None) -> Recording:
    """Read an sEMG recording (CSV, BioSPPy text, UCI lower-limb text, EDF/BDF).

    `fs_hz` overrides / supplies the sampling rate. Raises RecordingError (one-line
    message) for missing or unreadable files, wrong columns, unknown rate, NaNs or
    no samples.
    """
    p = Path(path)
    if not p.is_file():
        raise RecordingError(f"{p}: no such file")
    if fs_hz is not None and (not np.isfinite(fs_hz) or fs_hz <= 0):
        raise RecordingError(f"invalid sampling rate {fs_hz}")
    if p.suffix.lower() in (".edf", ".bdf"):
        return _read_edf(p, fs_hz)
    raw = p.read_bytes()
    if raw[:8] == b"0       " and p.suffix.lower() not in (".csv", ".txt"):
        return _read_edf(p, fs_hz)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise RecordingError(f"{p.name}: not a text file (and not .edf/.bdf)") from None
    if not text.strip():
        raise RecordingError(f"{p.name}: empty file")
    first = text.lstrip().splitlines()[0]
    if first.startswith("#"):
        return _read_biosppy(p, text, fs_hz)
    if first.startswith("File Name:"):
        return _read_uci(p, text, fs_hz)
    return _read_csv(p, text, fs_hz)

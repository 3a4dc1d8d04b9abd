"""The same recording through `mimetic dsp` (offline) and through the replay's framing and the
worker's per-device logic gives the same activations and the same asymmetry.

The replay path here is `ingest.runner.recording_frames` (what `mimetic replay` sends) into
`DeviceProcessor` (what the worker runs per device); the pipeline tests show that Kafka, the worker
process and the sink store exactly the records `DeviceProcessor` makes (test_crash_recovery,
test_rebalance: no more, no fewer, same values). `mimetic dsp` runs with the worker's envelope hop
and its mains default (the worker notches the configured 50 Hz when it detects no hum).

The recording has a quiet start: the live detector learns its rest baseline from the quietest
second so far and detects from the third second on, the offline one from the whole recording.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np

from ingest import wire
from ingest.runner import recording_frames
from processors import records as R
from processors.worker.device import DeviceProcessor, WorkerParams
from tests.ingest.conftest import MIMETIC
from tests.worker import script as S

NAMES = ["zygomaticus_L", "zygomaticus_R", "frontalis_L", "frontalis_R"]


def write_csv(path: Path) -> None:
    x = S.emg_uv()
    t = np.arange(x.shape[1]) / S.FS_HZ
    lines = ["time_s," + ",".join(NAMES)]
    lines += [f"{t[i]:.3f}," + ",".join(f"{v:.3f}" for v in x[:, i]) for i in range(x.shape[1])]
    path.write_text("\n".join(lines) + "\n")


def live(path: Path) -> list[R.Record]:
    records, info = recording_frames(path, "dsp-vs-live", fs_hz=S.FS_HZ, t0_us=S.T0_US)
    assert [c["muscle"] for c in info["channel_map"]] == ["zygomaticus"] * 2 + ["frontalis"] * 2
    dp = DeviceProcessor("dsp-vs-live", WorkerParams())
    out: list[R.Record] = []
    for r in records:
        out += dp.on_frame(r.item, wire.encode_frame(r.item))[0] if r.kind == wire.KIND_FRAME else dp.on_event(r.item)
    return out


def test_dsp_and_the_live_path_give_the_same_activations_and_asymmetry(tmp_path: Path) -> None:
    path = tmp_path / "recording.csv"
    write_csv(path)
    p = subprocess.run([MIMETIC, "dsp", str(path), "--json", "--hop-s", str(WorkerParams().hop_s), "--notch", "50"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    offline = json.loads(p.stdout)
    out = live(path)
    t0_s = S.T0_US / 1e6
    worst_on = worst_off = 0.0
    for ch, name in enumerate(NAMES):
        want = [(a["onset_s"], a["offset_s"]) for a in offline["channels"][ch]["activations"]]
        got = [(a.onset.timestamp() - t0_s, a.offset.timestamp() - t0_s)
               for a in out if isinstance(a, R.ActivationRecord) and a.channel == ch]
        assert len(got) == len(want), (name, got, want)
        for (on, off), (w_on, w_off) in zip(got, want):
            worst_on, worst_off = max(worst_on, abs(on - w_on)), max(worst_off, abs(off - w_off))
    assert sum(len(c["activations"]) for c in offline["channels"]) == 12  # 4 smiles on 3 channels
    assert worst_on <= 0.015 and worst_off <= 0.015, (worst_on, worst_off)
    # asymmetry: the offline AI of each pair over its activations; the live one per active 1 s window
    ai = {q["muscle"]: q["asymmetry_index"] for q in offline["pairs"]}
    windows = [r for r in out if isinstance(r, R.BalanceRecord)]
    zyg = [r.ai for r in windows if r.muscle == "zygomaticus"]
    fro = [r.ai for r in windows if r.muscle == "frontalis"]
    assert len(zyg) >= 8 and len(fro) >= 4
    assert abs(ai["zygomaticus"] - (200 - 80) / (200 + 80)) < 0.005  # the recording's left/right gains
    assert max(abs(a - ai["zygomaticus"]) for a in zyg) < 0.01
    assert abs(float(np.median(zyg)) - ai["zygomaticus"]) < 0.005
    # frontalis: 15 µV of co-activation on the left over 5 µV of noise: the rest removal dominates
    assert abs(float(np.median(fro)) - ai["frontalis"]) < 0.03
    print(f"onsets within {worst_on * 1e3:.1f} ms, offsets within {worst_off * 1e3:.1f} ms; AI zygomaticus "
          f"offline {ai['zygomaticus']:.4f}, live median {np.median(zyg):.4f}; frontalis offline "
          f"{ai['frontalis']:.3f}, live median {np.median(fro):.3f}")

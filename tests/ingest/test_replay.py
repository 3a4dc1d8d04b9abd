"""`mimetic replay` of a real recording through the gateway: every sample arrives, in order."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest

from ingest import wire
from ingest.runner import recording_frames
from tests.dsp.synth import DATA_DIR
from tests.ingest.conftest import MIMETIC, read_topic

pytestmark = pytest.mark.stack
REC = DATA_DIR / "biosppy" / "emg_1.txt"


def test_replay_recording_through_gateway(gateway, settings, new_device):
    from processors.recordings import load_recording

    dev, secret = new_device(prefix="replay")
    env = {**os.environ, **settings.as_env(), "MIMETIC_GATEWAY_URL": gateway.url, "MIMETIC_DEVICE_SECRET": secret}
    p = subprocess.run([MIMETIC, "replay", str(REC), "--device", dev, "--speed", "0"], env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    info = json.loads(p.stdout.strip().splitlines()[-1])
    rec = load_recording(REC)
    frames = sorted((wire.decode_frame(v) for _, v, _ in read_topic(settings, "frame", dev)), key=lambda f: f.seq)
    assert len(frames) == info["frames"] == info["sent"]
    assert [f.seq for f in frames] == list(range(1, len(frames) + 1))
    x = np.concatenate([f.microvolts() for f in frames], axis=1)
    ref = rec.samples_uv - np.median(rec.samples_uv, axis=1, keepdims=True)
    assert x.shape == ref.shape
    assert np.max(np.abs(x - ref)) <= frames[0].scale_uv  # quantisation only
    assert all(f.fs_hz == 1000 for f in frames)
    dt = np.diff([f.t_us for f in frames])
    assert np.all(dt == 50_000)


def test_replay_records_with_channel_map(tmp_path):
    """A CSV with facial channel names gets session events with its channel map."""
    t = np.arange(2000) / 1000
    cols = {"zygomaticus_L": 50 * np.sin(2 * np.pi * 100 * t), "zygomaticus_R": 25 * np.sin(2 * np.pi * 90 * t)}
    path = tmp_path / "rec.csv"
    path.write_text("time_s,zygomaticus_L,zygomaticus_R\n" + "\n".join(
        f"{t[i]:.3f},{cols['zygomaticus_L'][i]:.4f},{cols['zygomaticus_R'][i]:.4f}" for i in range(len(t))))
    records, info = recording_frames(path, "replay-csv", fs_hz=1000)
    assert records[0].kind == "event" and records[0].item.type == "session_start"
    assert [c.muscle for c in records[0].item.channel_map] == ["zygomaticus", "zygomaticus"]
    assert records[-1].item.type == "session_end"
    assert info["frames"] == 40

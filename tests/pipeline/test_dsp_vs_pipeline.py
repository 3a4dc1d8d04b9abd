"""One recording through `mimetic dsp` and through the replay into Kafka, the worker and the sink
(real processes): the same activations and the same asymmetry as stored in the database.
(The pure half of this, without Kafka, is tests/worker/test_dsp_vs_live.py.)"""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from pathlib import Path

import numpy as np
import psycopg
import pytest

from ingest import registry
from ingest.runner import recording_frames, run_replay
from mimetic.config import Settings
from processors.worker.device import WorkerParams
from tests.ingest.conftest import MIMETIC
from tests.worker.test_dsp_vs_live import NAMES, write_csv

from .conftest import query, wait_for

pytestmark = [pytest.mark.stack, pytest.mark.slow]


def test_dsp_and_replay_through_the_pipeline_store_the_same_activations_and_asymmetry(
        pipeline_settings: Settings, services, tmp_path: Path) -> None:
    s = pipeline_settings
    path = tmp_path / "recording.csv"
    write_csv(path)
    dev = f"dspvs-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(s.db_dsn(), autocommit=True) as conn:
        registry.ensure_clinic(conn, "test-clinic", "Test clinic")
        registry.add_device(conn, clinic_id="test-clinic", device_id=dev, kdf_n=2**10)
    records, info = recording_frames(path, dev, fs_hz=1000)  # ends now: inside the device-clock rule
    t0_s = records[0].item.t_us / 1e6
    worker, sink = services("worker"), services("sink")
    result = asyncio.run(run_replay(records, s, dev, via="kafka", secret=None, speed=0))
    assert result["rejected"] == 0 and result["sent"] == len(records), result
    wait_for(lambda: query(s, "select status from session_summary where device_id = %s", (dev,)) == [("ended",)],
             180, "the replayed session ended and stored", [worker, sink])

    p = subprocess.run([MIMETIC, "dsp", str(path), "--json", "--hop-s", str(WorkerParams().hop_s), "--notch", "50"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    offline = json.loads(p.stdout)
    stored = query(s, "select channel, extract(epoch from onset)::float8, extract(epoch from offset_at)::float8 "
                      "from activation where device_id = %s order by channel, onset", (dev,))
    worst_on = worst_off = 0.0
    for ch, name in enumerate(NAMES):
        want = [(a["onset_s"], a["offset_s"]) for a in offline["channels"][ch]["activations"]]
        got = [(on - t0_s, off - t0_s) for c, on, off in stored if c == ch]
        assert len(got) == len(want), (name, got, want)
        for (on, off), (w_on, w_off) in zip(got, want):
            worst_on, worst_off = max(worst_on, abs(on - w_on)), max(worst_off, abs(off - w_off))
    # 4 smiles on 3 channels, and one noise excursion at 19 s that both paths' causal baseline passes
    # (tests/worker/test_dsp_vs_live.py)
    assert 12 <= len(stored) <= 13 and worst_on <= 0.015 and worst_off <= 0.015, (len(stored), worst_on, worst_off)
    ai = {q["muscle"]: q["asymmetry_index"] for q in offline["pairs"]}
    zyg = [a for (a,) in query(s, "select ai from balance where device_id = %s and window_kind = 'sliding' "
                                  "and muscle = 'zygomaticus'", (dev,))]
    # the windows that hold a smile (not just a few envelope samples of its edge over 5 µV of noise)
    smiling = [a for (a,) in query(s, "select ai from balance where device_id = %s and window_kind = 'sliding' "
                                      "and muscle = 'zygomaticus' and left_value > 10", (dev,))]
    assert len(smiling) >= 8 and max(abs(a - ai["zygomaticus"]) for a in smiling) < 0.01
    assert abs(float(np.median(zyg)) - ai["zygomaticus"]) < 0.005
    print(f"stored: onsets within {worst_on * 1e3:.1f} ms, offsets within {worst_off * 1e3:.1f} ms of "
          f"mimetic dsp; AI offline {ai['zygomaticus']:.4f}, stored live median {np.median(zyg):.4f}")

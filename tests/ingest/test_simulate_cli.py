"""`mimetic simulate ... --truth-out` against the real stack: the truth file matches what reached Kafka."""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter

import pytest

from ingest import wire
from tests.ingest.conftest import MIMETIC, read_topic

pytestmark = pytest.mark.stack


def test_simulate_truth_matches_topics(gateway, settings, tmp_path):
    truth_path = tmp_path / "truth.json"
    env = {**os.environ, **settings.as_env(), "MIMETIC_GATEWAY_URL": gateway.url}
    cmd = [MIMETIC, "simulate", "--patients", "3", "--sessions", "2", "--duration", "60", "--seed", "7",
           "--truth-out", str(truth_path), "--fast", "--max-rate", "0", "--device-prefix", f"sim7-{settings.topic_prefix}"]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    truth = json.loads(truth_path.read_text())
    from ingest.verify import verify_truth

    assert verify_truth(settings, truth) == []
    assert truth["schema"] == "mimetic.simulator.truth/1" and len(truth["patients"]) == 3
    assert {pt["affected_side"] for pt in truth["patients"]} <= {"L", "R"}
    for pt in truth["patients"]:
        dev = pt["device_id"]
        delivery = truth["delivery"]["devices"][dev]
        assert delivery["rejected"] == 0
        frames = [wire.decode_frame_record(v, h) for _, v, h in read_topic(settings, "frame", dev)]
        tel = [wire.decode_telemetry_record(v, h)[0] for _, v, h in read_topic(settings, "telemetry", dev)]
        evs = [wire.decode_event_record(v, h)[0] for _, v, h in read_topic(settings, "event", dev)]
        assert len(frames) + len(tel) + len(evs) == delivery["sent"]
        for s in pt["sessions"]:
            sent = s["sent"]
            fs = [(f, m) for f, m in frames if str(f.session_id) == s["session_id"]]
            assert len(fs) == sent["frames_sent"]
            seqs = Counter(f.seq for f, _ in fs)
            expected = set(range(sent["first_seq"], sent["last_seq"] + 1)) - set(sent["dropped_seqs"])
            assert set(seqs) == expected
            assert sorted(q for q, n in seqs.items() if n == 2) == sorted(sent["duplicated_seqs"])
            assert sorted(f.seq for f, m in fs if m.dup or m.resent) == sorted(sent["duplicated_seqs"])  # 2nd copies marked
            assert all(s["start_us"] <= f.t_us < s["end_us"] for f, _ in fs)
            assert all(f.stim_active == (s["therapy_type"] == "microcurrent" and f.t_us >= s["start_us"] +
                                         s["stimulation_on_s"] * 1e6) for f, _ in fs if s["stimulation"])
            se = [e for e in evs if str(e.session_id) == s["session_id"]]
            assert [e.type for e in se][0] == "session_start" and se[-1].type == "session_end"
            starts = [(e.task, e.repetition, e.t_us) for e in se if e.type == "task_start"]
            assert starts == [(w["task"], w["repetition"], w["start_us"]) for w in s["tasks"]]
            rep = [e for e in se if e.type == "patient_report"][0]
            assert rep.discomfort == s["report"]["discomfort"]
            st = [t for t in tel if str(t.session_id) == s["session_id"]]
            assert len(st) == sent["telemetry_sent"]
            for f in s["faults"]:
                if f["type"] == "electrode_liftoff":
                    inside = [t for t in st if f["start_us"] <= t.t_us < f["end_us"]]
                    assert inside and all(t.impedance_kohm[f["channel"]] > 1000 for t in inside)
                if f["type"] == "over_current":
                    inside = [t for t in st if f["start_us"] <= t.t_us < f["end_us"]]
                    assert all(t.stim_current_ua > s["stimulation"]["current_limit_ua"] for t in inside)
            assert set(s["muscles"]) == {"zygomaticus", "orbicularis_oculi", "frontalis", "orbicularis_oris"}


def test_simulate_straight_to_kafka_verifies(settings, tmp_path):
    env = {**os.environ, **settings.as_env()}
    cmd = [MIMETIC, "simulate", "--patients", "2", "--sessions", "1", "--duration", "20", "--seed", "3", "--fast",
           "--via", "kafka", "--faults", "0.9", "--verify", "--device-prefix", f"simk-{settings.topic_prefix}",
           "--truth-out", str(tmp_path / "t.json")]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "verified" in p.stdout
    truth = json.loads((tmp_path / "t.json").read_text())
    assert all(s["faults"] for pt in truth["patients"] for s in pt["sessions"])

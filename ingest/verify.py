"""Check a simulator truth file against what actually reached the raw topics.

`mimetic simulate --verify` runs it after sending; the simulate test uses it too.
Returns a list of problems (empty = the truth matches what was sent).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from typing import Any

from ingest import wire
from mimetic.config import Settings


def read_raw(settings: Settings, kind: str, device_ids: set[str]) -> dict[str, list[tuple[Any, wire.RecordMeta]]]:
    """Decoded records of one raw topic up to its current end, for the given devices, in offset order."""
    from kafka import KafkaConsumer, TopicPartition

    from mimetic.kafka_security import client_kwargs

    topic = wire.topic_spec_for(kind).name(settings)
    keys = {d.encode() for d in device_ids}
    out: dict[str, list] = defaultdict(list)
    c = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers(), enable_auto_commit=False, group_id=None,
                      **client_kwargs(settings))
    try:
        parts = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or [])]
        c.assign(parts)
        end = c.end_offsets(parts)
        c.seek_to_beginning(*parts)
        remaining = {tp for tp in parts if end[tp] > 0}
        deadline = time.monotonic() + 60
        while remaining and time.monotonic() < deadline:
            for tp, recs in c.poll(timeout_ms=500, max_records=5000).items():
                for r in recs:
                    if r.offset < end[tp] and r.key in keys:
                        out[r.key.decode()].append(wire.decode_record(r.value, r.headers))
                if c.position(tp) >= end[tp]:
                    remaining.discard(tp)
        if remaining:
            raise TimeoutError(f"could not read {topic} to its end")
    finally:
        c.close()
    return out


def verify_truth(settings: Settings, truth: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    devices = {p["device_id"] for p in truth["patients"]}
    frames = read_raw(settings, wire.KIND_FRAME, devices)
    tels = read_raw(settings, wire.KIND_TELEMETRY, devices)
    evs = read_raw(settings, wire.KIND_EVENT, devices)

    def need(cond: bool, msg: str) -> None:
        if not cond:
            problems.append(msg)

    for pt in truth["patients"]:
        dev = pt["device_id"]
        for s in pt["sessions"]:
            where = f"{dev} session {s['index']}"
            sent = s.get("sent") or {}
            sid = s["session_id"]
            fs = [(f, m) for f, m in frames.get(dev, []) if str(f.session_id) == sid]
            need(len(fs) == sent.get("frames_sent"), f"{where}: {len(fs)} frames in Kafka, truth says {sent.get('frames_sent')}")
            seqs = Counter(f.seq for f, _ in fs)
            if sent.get("first_seq") is not None:
                expected = set(range(sent["first_seq"], sent["last_seq"] + 1)) - set(sent["dropped_seqs"])
                need(set(seqs) == expected, f"{where}: frame seqs differ from truth (lost or invented frames)")
                need(sorted(q for q, n in seqs.items() if n > 1) == sorted(sent["duplicated_seqs"]),
                     f"{where}: duplicated seqs differ from truth")
                need(sorted(f.seq for f, m in fs if m.dup or m.resent) == sorted(sent["duplicated_seqs"]),
                     f"{where}: duplicates not marked")
            need(all(s["start_us"] <= f.t_us < s["end_us"] for f, _ in fs), f"{where}: frame outside the session")
            se = [e for e, _ in evs.get(dev, []) if str(e.session_id) == sid]
            need(bool(se) and se[0].type == "session_start" and se[-1].type == "session_end",
                 f"{where}: session_start/session_end missing")
            starts = [(e.task, e.repetition, e.t_us) for e in se if e.type == "task_start"]
            need(starts == [(w["task"], w["repetition"], w["start_us"]) for w in s["tasks"]],
                 f"{where}: task markers differ from truth")
            reports = [e for e in se if e.type == "patient_report"]
            need(len(reports) == 1 and reports[0].discomfort == s["report"]["discomfort"],
                 f"{where}: patient report differs")
            st = [t for t, _ in tels.get(dev, []) if str(t.session_id) == sid]
            need(len(st) == sent.get("telemetry_sent"), f"{where}: {len(st)} telemetry records, truth says "
                                                        f"{sent.get('telemetry_sent')}")
            for f in s["faults"]:
                inside = [t for t in st if f["start_us"] <= t.t_us < f["end_us"]]
                silenced = any(g["type"] == "silent_device" and g["start_us"] < f["end_us"] and g["end_us"] > f["start_us"]
                               for g in s["faults"])
                if f["type"] == "electrode_liftoff":
                    need((bool(inside) or silenced) and all(t.impedance_kohm[f["channel"]] > 1000 for t in inside),
                         f"{where}: lift-off not visible in telemetry")
                elif f["type"] == "over_current":
                    need(all(t.stim_current_ua > s["stimulation"]["current_limit_ua"] for t in inside),
                         f"{where}: over-current not visible in telemetry")
                elif f["type"] == "silent_device":
                    need(not inside, f"{where}: telemetry during a silent period")
    return problems

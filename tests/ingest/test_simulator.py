"""Simulator: deterministic, realistic enough to measure, and truthful about what it sent."""

from __future__ import annotations

import numpy as np
from scipy import signal as sps

from ingest import wire
from ingest.simulator import DeviceStream, Simulation
from processors.measures import asymmetry_index, rest_level_uv, window_level_uv


def _collect(sim: Simulation, i: int):
    return list(sim.device_records(i))


def test_deterministic_given_seed():
    a = Simulation(patients=2, sessions=1, duration_s=30, seed=11)
    b = Simulation(patients=2, sessions=1, duration_s=30, seed=11, start_us=a.start_us)
    ra, rb = _collect(a, 1), _collect(b, 1)
    assert len(ra) == len(rb)
    for x, y in zip(ra, rb):
        assert x.kind == y.kind
        if x.kind == wire.KIND_FRAME:
            assert wire.encode_frame(x.item) == wire.encode_frame(y.item)
        else:
            assert x.item == y.item
    assert a.truth() == b.truth()
    c = Simulation(patients=2, sessions=1, duration_s=30, seed=12, start_us=a.start_us)
    assert c.truth()["patients"][0]["code"] != a.truth()["patients"][0]["code"]


def _measure_ai(records, fs, truth_session, muscles, chmap):
    frames = sorted((r.item for r in records if r.kind == wire.KIND_FRAME), key=lambda f: f.seq)
    x = np.concatenate([f.microvolts() for f in frames], axis=1)
    t0 = frames[0].t_us
    sos = sps.butter(4, [20, 450], btype="bandpass", fs=fs, output="sos")
    y = sps.sosfiltfilt(sos, x, axis=1)
    for f0 in (50, 60, 100, 120, 150, 180, 250, 300):
        b, a = sps.iirnotch(f0, 30, fs)
        y = sps.filtfilt(b, a, y, axis=1)
    win = int(0.1 * fs)
    env = np.sqrt(sps.fftconvolve(y**2, np.ones((1, win)) / win, mode="same", axes=1))
    rest = np.concatenate([np.arange((w["start_us"] - t0) * fs // 1_000_000, (w["stop_us"] - t0) * fs // 1_000_000)
                           for w in truth_session["tasks"] if w["task"] == "rest"])
    out = {}
    for m in muscles:
        task = truth_session["muscles"][m]["task"]
        idx = np.concatenate([np.arange((w["start_us"] - t0) * fs // 1_000_000, (w["stop_us"] - t0) * fs // 1_000_000)
                              for w in truth_session["tasks"] if w["task"] == task])
        left = [c["channel"] for c in chmap if c["muscle"] == m and c["side"] == "L"][0]
        right = [c["channel"] for c in chmap if c["muscle"] == m and c["side"] == "R"][0]
        # the definition (processors.measures): activity levels over rest, rest from the rest task
        rl, rr = rest_level_uv(env[left, rest]), rest_level_uv(env[right, rest])
        out[m] = float(asymmetry_index(window_level_uv(env[left, idx], rl), window_level_uv(env[right, idx], rr)))
    return out, y, env


def test_truth_ai_is_measurable_from_the_signal():
    sim = Simulation(patients=2, sessions=1, duration_s=45, seed=3, fault_prob=0.0,
                     therapy_types=("biofeedback_exercise",))
    truth = sim.truth()
    for i in range(2):
        recs = _collect(sim, i)
        ts = truth["patients"][i]["sessions"][0]
        muscles = list(ts["muscles"])
        ai, y, _ = _measure_ai(recs, sim.fs_hz, ts, muscles, sim.channel_map)
        for m in muscles:
            assert abs(ai[m] - ts["muscles"][m]["ai"]) < 0.05, (m, ai[m], ts["muscles"][m]["ai"])
        # EMG spectrum during contraction peaks in the facial-EMG band
        f, pxx = sps.welch(y[0], fs=sim.fs_hz, nperseg=256)
        assert 60 <= f[np.argmax(pxx)] <= 150
        band = (f >= 20) & (f <= 450)
        cum = np.cumsum(pxx[band])
        median_f = f[band][np.searchsorted(cum, cum[-1] / 2)]
        assert 80 <= median_f <= 150


def test_affected_side_and_recovery():
    sim = Simulation(patients=3, sessions=6, duration_s=30, seed=5, fault_prob=0.0)
    for p in sim.truth()["patients"]:
        sign = 1 if p["affected_side"] == "R" else -1  # affected weaker -> AI points to the healthy side
        ais = [np.mean([sign * m["ai"] for m in s["muscles"].values()]) for s in p["sessions"]]
        assert all(a > 0 for a in ais)
        if p["responder"]:
            assert ais[-1] < ais[0] - 0.1
        else:
            assert abs(ais[-1] - ais[0]) < 0.06
        for s in p["sessions"]:
            for sk in s["synkinesis"]:
                # no co-activation at all: undefined (None), not an index
                assert (sk["index"] is not None and sk["index"] > 0.3) == sk["present"]


def test_rest_and_contraction_amplitudes():
    sim = Simulation(patients=1, sessions=1, duration_s=30, seed=1, fault_prob=0.0,
                     therapy_types=("biofeedback_exercise",))
    ts = sim.truth()["patients"][0]["sessions"][0]
    _, _, env = _measure_ai(_collect(sim, 0), sim.fs_hz, ts, list(ts["muscles"]), sim.channel_map)
    rest = [w for w in ts["tasks"] if w["task"] == "rest"][0]
    r = env[:, int(rest["start_s"] * 2000): int(rest["stop_s"] * 2000)].mean(axis=1)
    assert np.all((r > 1.5) & (r < 7))
    mvc = [w for w in ts["tasks"] if w["task"] == "mvc_calibration"][0]
    m = env[:, int((mvc["start_s"] + 0.8) * 2000): int(mvc["stop_s"] * 2000)].mean(axis=1)
    assert np.all((m > 15) & (m < 400))


def test_network_faults_match_truth():
    sim = Simulation(patients=4, sessions=2, duration_s=40, seed=9, fault_prob=0.9)
    truth = sim.truth  # filled after streaming
    by_dev = {i: _collect(sim, i) for i in range(4)}
    t = truth()
    seen_types = set()
    for i, p in enumerate(t["patients"]):
        seqs = [r.item.seq for r in by_dev[i] if r.kind == wire.KIND_FRAME]
        for s in p["sessions"]:
            sent = s["sent"]
            seen_types |= {f["type"] for f in s["faults"]}
            in_session = [q for q in seqs if sent["first_seq"] <= q <= sent["last_seq"]]
            assert len(in_session) == sent["frames_sent"]
            assert not set(sent["dropped_seqs"]) & set(in_session)
            assert set(in_session) | set(sent["dropped_seqs"]) == set(range(sent["first_seq"], sent["last_seq"] + 1))
            for d in sent["duplicated_seqs"]:
                assert in_session.count(d) == 2
            if sent["reordered_seqs"]:
                assert in_session != sorted(in_session)
            if any(f["type"] == "silent_device" for f in s["faults"]):
                fr = [r.item for r in by_dev[i] if r.kind == wire.KIND_FRAME and r.session_index == s["index"]]
                gaps = np.diff(sorted(f.t_us for f in fr))
                assert gaps.max() >= 9_000_000
        evs = [r.item for r in by_dev[i] if r.kind == wire.KIND_EVENT]
        assert [e.type for e in evs].count("session_start") == len(p["sessions"])
    assert {"electrode_liftoff", "packet_loss", "duplicates", "silent_device", "low_battery"} <= seen_types


def test_device_stream_api():
    s = DeviceStream("bench-001", seed=2, session_s=30)
    it = s.frames()
    got = [next(it) for _ in range(700)]  # crosses a session boundary
    frames = [wire.decode_frame(b) for _, b in got]
    assert all(f.device_id == "bench-001" and f.samples.shape == (8, 100) for f in frames)
    assert [f.seq for f in frames] == list(range(1, 701))
    assert len({f.session_id for f in frames}) == 2


def test_stimulation_pulses_where_truth_says():
    """Blanking the samples the truth names as pulses recovers the AI in a microcurrent session."""
    sim = Simulation(patients=1, sessions=1, duration_s=40, seed=4, fault_prob=0.0, therapy_types=("microcurrent",))
    ts = sim.truth()["patients"][0]["sessions"][0]
    recs = _collect(sim, 0)
    fs = sim.fs_hz
    frames = sorted((r.item for r in recs if r.kind == wire.KIND_FRAME), key=lambda f: f.seq)
    x = np.concatenate([f.microvolts() for f in frames], axis=1)
    st = ts["stimulation"]
    k = np.arange(int((40 - ts["stimulation_on_s"]) * st["frequency_hz"]) + 1)
    idx = np.rint(ts["stimulation_on_s"] * fs + k * fs / st["frequency_hz"]).astype(int)
    idx = idx[idx < x.shape[1] - 1]
    a = 3.0 * st["current_ua"]
    assert np.all(np.abs(x[:, idx]).min(axis=1) > 0.3 * a)  # the pulses are there
    blank = np.zeros(x.shape[1], bool)
    for d in (-1, 0, 1, 2):
        blank[np.clip(idx + d, 0, x.shape[1] - 1)] = True
    good = ~blank
    for c in range(x.shape[0]):  # replace blanked samples by linear interpolation
        x[c, blank] = np.interp(np.flatnonzero(blank), np.flatnonzero(good), x[c, good])
    stim_frames = [f for f in frames if f.stim_active]
    assert stim_frames and all(f.t_us >= ts["start_us"] + ts["stimulation_on_s"] * 1e6 for f in stim_frames)

    class R:  # re-wrap the cleaned signal as one record stream for _measure_ai
        pass

    cleaned = wire.Frame(device_id=frames[0].device_id, seq=1, t_us=frames[0].t_us, fs_hz=fs, scale_uv=1.0,
                         samples=np.clip(np.rint(x), -32768, 32767).astype(np.int16))
    r = R()
    r.kind, r.item = wire.KIND_FRAME, cleaned
    ai, _, _ = _measure_ai([r], fs, ts, list(ts["muscles"]), sim.channel_map)
    for m in ts["muscles"]:
        assert abs(ai[m] - ts["muscles"][m]["ai"]) < 0.05, (m, ai[m], ts["muscles"][m]["ai"])


def test_device_stream_kafka_records():
    s = DeviceStream("bench-002", seed=3, session_s=20)
    recs = []
    for rec in s.kafka_records():
        recs.append(rec)
        if len(recs) > 500:
            break
    kinds = {k for k, *_ in recs}
    assert kinds == {"frame", "telemetry", "event"}
    for kind, t_us, key, value, headers in recs:
        item, meta = wire.decode_record(value, headers)
        assert key == b"bench-002" and meta.kind == kind and item.t_us == t_us

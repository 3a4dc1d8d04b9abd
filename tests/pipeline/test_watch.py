"""`mimetic watch` against a running pipeline, driven in a real terminal (tmux, 80 x 30):
a device streams in real time (20 frames/s) into Kafka, the worker and the sink run, and the
screen is captured several times a second. Each captured screen must show the envelopes the
database stored for the moment it names (within TOLERANCE_UV), keep up with the device
(it shows every envelope the worker published GRACE_S before; the device -> screen delay is
printed: it is mostly the worker's, which a loaded machine stretches), refresh several times a
second, and show the current task and open alerts that the pipeline raised."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from ingest import wire
from ingest.runner import register_simulation
from ingest.simulator import Simulation
from mimetic.config import REPO_ROOT, Settings

from .conftest import query, streaming, wait_for

pytestmark = [pytest.mark.stack, pytest.mark.slow]

TOLERANCE_UV = 0.06   # the screen rounds to 0.1 µV; Kafka and the database carry the same float32 values
GRACE_S = 0.5         # the screen shows every envelope the worker published this long before a capture
SESSION_S = 50.0
WARM_UP_S, CAPTURE_S, CAPTURE_EVERY_S = 8.0, 15.0, 0.25  # capture 15 s from the first envelope shown
SMOOTH_S = 0.25

ROW = re.compile(r"^([a-z_]+)\s+(-|\d+\.\d)\s+(-|\d+\.\d)\s+(-|[+-]\d\.\d\d)\s")
STREAM = re.compile(r"stream time (\d\d):(\d\d):(\d\d)\.(\d{3}) UTC\s+(-?\d+\.\d) s behind")


class Tmux:
    """A private tmux server (own socket) running one command in an 80 x 30 window."""

    def __init__(self, command: str, tmp: Path):
        if shutil.which("tmux") is None:
            pytest.fail("tmux is needed to drive the watch view in a terminal: apt-get install tmux")
        self.sock = f"mimetic-watch-{uuid.uuid4().hex[:8]}"
        script = tmp / "watch.sh"
        script.write_text(f"#!/bin/sh\ncd {shlex.quote(str(REPO_ROOT))}\n{command} 2> {tmp}/watch.err\n"
                          "echo EXITED $?; sleep 600\n")
        script.chmod(0o755)
        self._run("new-session", "-d", "-x", "80", "-y", "30", "-s", "w", str(script))

    def _run(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.sock, *args], capture_output=True, text=True, check=True,
                              env={"PATH": "/usr/bin:/bin", "TERM": "xterm-256color"}).stdout

    def screen(self) -> str:
        return self._run("capture-pane", "-p", "-t", "w")

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.sock, "kill-server"], capture_output=True)


def _parse(screen: str, day: datetime) -> tuple[float, float, dict[str, tuple]] | None:
    m = STREAM.search(screen)
    if not m:
        return None
    hh, mm, ss, ms, behind = m.groups()
    t = day.replace(hour=int(hh), minute=int(mm), second=int(ss), microsecond=int(ms) * 1000).timestamp()
    rows = {}
    for ln in screen.splitlines():
        r = ROW.match(ln)
        if r and r.group(1) != "muscle":
            rows[r.group(1)] = tuple(None if v == "-" else float(v) for v in r.groups()[1:])
    return t, float(behind), rows


def _stored(s: Settings, device: str) -> tuple[np.ndarray, np.ndarray]:
    """Every stored envelope sample of the device: times (s) and values (channels x samples)."""
    rows = query(s, "select time, fs_hz, env from envelope where device_id = %s order by time", (device,))
    times, cols = [], []
    for t, fs, env in rows:
        a = np.asarray(env, dtype=np.float64)
        times.extend(t.timestamp() + np.arange(a.shape[1]) / fs)
        cols.append(a)
    return np.asarray(times), np.concatenate(cols, axis=1)


def _published(s: Settings, device: str) -> np.ndarray:
    """(Kafka timestamp, last sample time) of every envelope frame the worker published for the device."""
    from kafka import KafkaConsumer, TopicPartition

    from mimetic import topics
    from mimetic.topics import partition_of
    from processors import records as R

    c = KafkaConsumer(bootstrap_servers=s.kafka_bootstrap, group_id=None, enable_auto_commit=False)
    try:
        name = topics.FEATURES.name(s)
        tp = TopicPartition(name, partition_of(device.encode(), len(c.partitions_for_topic(name))))
        c.assign([tp])
        c.seek_to_beginning(tp)
        end = c.end_offsets([tp])[tp]
        out = []
        while c.position(tp) < end:
            for m in c.poll(timeout_ms=1000).get(tp, []):
                if m.key == device.encode() and dict(m.headers).get("kind") == b"envelope":
                    f = R.decode(m.value)
                    out.append((m.timestamp / 1000, f.time.timestamp() + (f.array.shape[1] - 1) / f.fs_hz))
        return np.asarray(out)
    finally:
        c.close()


def test_watch_follows_a_live_device(pipeline_settings: Settings, services, tmp_path: Path) -> None:
    s = pipeline_settings
    sim = Simulation(patients=1, sessions=1, duration_s=SESSION_S, seed=12, fault_prob=1.0,
                     start_us=wire.now_us(), session_gap_s=SESSION_S + 2, device_prefix=f"watch{uuid.uuid4().hex[:6]}")
    register_simulation(sim, s, kdf_n=2**10)
    device = sim.device_ids[0]
    worker, sink = services("worker"), services("sink")
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in s.as_env().items() if "PASSWORD" not in k)
    tmux = Tmux(f"env {env} {shlex.quote(sys.executable)} -m mimetic.cli watch --device {device}", tmp_path)
    captures: list[tuple[float, str]] = []
    try:
        with streaming(sim, s, realtime=True) as fut:
            t0 = time.time()
            origin_lag_s = t0 - sim.start_us / 1e6  # device time + this = when the pacing sends it
            first = None
            while first is None or time.time() - first < CAPTURE_S:
                screen = tmux.screen()
                if first is None and STREAM.search(screen) and time.time() - t0 > WARM_UP_S:
                    first = time.time()
                if first is not None:
                    captures.append((time.time(), screen))
                assert worker.alive() and sink.alive()
                assert time.time() - t0 < SESSION_S, "the pipeline showed nothing during the session"
                time.sleep(CAPTURE_EVERY_S)
            fut.result(timeout=SESSION_S + 60)
        final = tmux.screen()
    finally:
        tmux.close()
    assert "EXITED" not in final, (final, (tmp_path / "watch.err").read_text()[-3000:])
    assert max(len(ln) for ln in final.splitlines()) <= 80

    wait_for(lambda: query(s, "select count(*) from session_summary where device_id = %s and status <> 'open'",
                           (device,))[0][0] == 1, 90, "the session stored and closed", [worker, sink])
    times, values = _stored(s, device)
    sites = {(c["muscle"], c["side"]): c["channel"] for c in sim.channel_map}
    day = datetime.now(timezone.utc)

    parsed = [(wall, p) for wall, scr in captures if (p := _parse(scr, day)) is not None]
    assert len(parsed) >= 0.9 * len(captures) > 30, captures[:2]
    published = _published(s, device)
    checked = 0
    lags, behind_worker = [], []
    for wall, (t_shown, behind, rows) in parsed:
        # keeps up: it shows what the worker had published GRACE_S before the capture ...
        ready = published[published[:, 0] <= wall - GRACE_S]
        if len(ready):  # (the first screens may show envelopes younger than GRACE_S)
            assert t_shown >= ready[:, 1].max() - 1e-3, (wall, t_shown, ready[:, 1].max())
        behind_worker.append(published[published[:, 0] <= wall][:, 1].max() - t_shown)
        # ... and the whole pipeline stays close to what the device has sent
        lags.append(wall - origin_lag_s - t_shown)
        assert rows.keys() == {m for m, _side in sites}
        in_window = (times > t_shown - SMOOTH_S + 0.005) & (times <= t_shown + 0.005)
        assert 1 <= in_window.sum() <= round(SMOOTH_S * 40)  # 10 at 40 Hz, fewer after a (faulty) gap
        for muscle, (left, right, _ai) in rows.items():
            for side, shown in (("L", left), ("R", right)):
                want = values[sites[(muscle, side)], in_window].mean()
                assert shown is not None and abs(shown - want) <= TOLERANCE_UV, (muscle, side, shown, want)
                checked += 1
    assert checked >= 30 * 8
    lags_a, bw = np.asarray(lags), np.asarray(behind_worker)
    print(f"watch: {len(parsed)} screens; device -> screen median {np.median(lags_a):.2f} s, max "
          f"{lags_a.max():.2f} s; screen behind the worker's output median {np.median(bw):.3f} s, max {bw.max():.3f} s")
    third = len(bw) // 3
    assert np.median(bw[-third:]) <= np.median(bw[:third]) + 0.1, "the view falls behind the stream"

    # refreshed several times a second: the keep-up check above allows GRACE_S from the worker's
    # output to the screen; and most captures 0.25 s apart show a new moment (device silences and
    # worker pauses under load excepted)
    shown_times = [p[0] for _w, p in parsed]
    assert len(set(shown_times)) >= len(shown_times) / 2, shown_times

    text = "\n".join(scr for _w, scr in captures)
    assert re.search(r"task [a-z_]+ #\d+ since \d\d:\d\d:\d\d\.\d", text), "no current task shown"
    shown_alerts = set(re.findall(r"^  (?:critical|warning|info)\s+([a-z_]+)", text, re.M))
    stored_alerts = {r[0] for r in query(s, "select alert_type from alert where device_id = %s", (device,))}
    assert shown_alerts and shown_alerts <= stored_alerts, (shown_alerts, stored_alerts)
    assert any(re.search(r"[+-]\d\.\d\d", ln) for ln in text.splitlines() if ln.startswith("zygomaticus"))

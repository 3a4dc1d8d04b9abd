"""The watch view's state and drawing, without services: what is shown is what the records
said (mean of the last SMOOTH_S of envelope), bounded whatever arrives, within 80 columns."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dashboards.watch.state import HISTORY_S, MAX_ALERTS, MAX_ENV_FS_HZ, SMOOTH_S, LiveState
from dashboards.watch.view import WIDTH, lines
from processors import records as R

T0 = datetime(2026, 12, 1, 12, 0, 0, tzinfo=timezone.utc)
SITES = [{"channel": c, "muscle": m, "side": s} for c, (m, s) in enumerate(
    [(m, s) for m in ("frontalis", "depressor_anguli_oris", "zygomaticus", "orbicularis_oris") for s in "LR"])]
FS = 40.0


def _frame(seq: int, values: np.ndarray, t0: datetime = T0, fs: float = FS) -> R.EnvelopeFrame:
    """Frame `seq` of 2 envelope samples per channel (50 ms at 40 Hz)."""
    n = values.shape[1]
    return R.EnvelopeFrame.from_array(values, device_id="d1", seq=seq, time=t0 + timedelta(seconds=seq * n / fs),
                                      fs_hz=fs, session_id=uuid.UUID(int=1))


def test_value_is_the_mean_of_the_last_quarter_second() -> None:
    stt = LiveState("d1")
    stt.set_channel_map(SITES)
    rng = np.random.default_rng(1)
    env = rng.uniform(1, 300, size=(8, 400))
    for k in range(200):
        stt.apply_envelope(_frame(k, env[:, 2 * k:2 * k + 2]))
    last = int(SMOOTH_S * FS)  # 10 samples
    for ch in range(8):
        assert abs(stt.value_uv(ch) - env[ch, -last:].astype(np.float32).astype(float).mean()) < 1e-4
    assert abs(stt.latest_s - (T0.timestamp() + 399 / FS)) < 1e-6


def test_replayed_frames_are_not_counted_twice() -> None:
    a, b = LiveState("d1"), LiveState("d1")
    env = np.arange(8 * 40, dtype=float).reshape(8, 40)
    for k in range(20):
        a.apply_envelope(_frame(k, env[:, 2 * k:2 * k + 2]))
        b.apply_envelope(_frame(k, env[:, 2 * k:2 * k + 2]))
        if k % 3 == 0:
            b.apply_envelope(_frame(k, env[:, 2 * k:2 * k + 2]))
    assert [a.value_uv(c) for c in range(8)] == [b.value_uv(c) for c in range(8)]
    assert len(a.history[0]) == len(b.history[0]) == 40


@settings(max_examples=40, deadline=None)
@given(n_frames=st.integers(1, 300), n_samples=st.integers(1, 40), fs=st.sampled_from([1.0, 40.0, 400.0, 1e6]),
       n_alerts=st.integers(0, 200))
def test_memory_is_bounded(n_frames: int, n_samples: int, fs: float, n_alerts: int) -> None:
    stt = LiveState("d1")
    for k in range(n_frames):
        stt.apply_envelope(_frame(k, np.ones((3, n_samples)), fs=fs))
    for i in range(n_alerts):
        stt.apply_alert(R.AlertRecord(alert_id=f"a{i}", device_id="d1", alert_type="impedance", severity="warning",
                                      state="raised", time=T0, raised_at=T0))
    assert all(len(h) <= HISTORY_S * MAX_ENV_FS_HZ for h in stt.history.values())
    assert len(stt.alerts) <= MAX_ALERTS


def test_screen_fits_80_columns_and_shows_task_balance_quality_alerts() -> None:
    stt = LiveState("demo7-000", patient_code="P-THSRT", affected_side="R")
    stt.set_channel_map(SITES)
    stt.session_id, stt.therapy = str(uuid.UUID(int=7)), "microcurrent"
    env = np.full((8, 2), 123.456)
    env[1] = 99999.0
    for k in range(120):
        stt.apply_envelope(_frame(k, env))
    stt.apply_balance(R.BalanceRecord(device_id="d1", time=T0, time_end=T0 + timedelta(seconds=1),
                                      window_kind="sliding", muscle="zygomaticus", left=10, right=30, ai=-0.5))
    stt.apply_quality(R.QualityRecord(device_id="d1", time=T0, window_s=1.0, channel=4, score=0.87,
                                      contact_ok=True))
    stt.apply_quality(R.QualityRecord(device_id="d1", time=T0, window_s=1.0, channel=5, score=0.0,
                                      contact_ok=False))
    from ingest.wire import TaskMarker
    stt.apply_event(TaskMarker(device_id="demo7-000", seq=1, t_us=int(T0.timestamp() * 1e6), type="task_start",
                               session_id=uuid.UUID(int=7), task="smile", repetition=2))
    for i, kind in enumerate(("over_current", "electrode_off", "impedance")):
        stt.apply_alert(R.AlertRecord(alert_id=kind, device_id="d1", alert_type=kind,
                                      severity="critical" if i == 0 else "warning", state="raised", time=T0,
                                      raised_at=T0, channel=None if i == 0 else 5, message="x" * 100))
    stt.apply_alert(R.AlertRecord(alert_id="impedance", device_id="d1", alert_type="impedance",
                                  severity="warning", state="cleared", time=T0, raised_at=T0))
    screen = lines(stt, now_s=stt.latest_s + 0.4)
    assert max(len(ln) for ln in screen) <= WIDTH, "\n".join(screen)
    text = "\n".join(screen)
    assert "task smile #2" in text and "0.4 s behind" in text and "patient P-THSRT" in text
    row = next(ln for ln in screen if ln.startswith("zygomaticus "))
    assert row.split()[1:6] == ["123.5", "123.5", "-0.50", "87%", "off"], row
    wide = next(ln for ln in screen if ln.startswith("frontalis "))
    assert wide.split()[1:3] == ["123.5", "99999"], wide
    assert "open alerts: 2" in text and "critical over_current" in text
    assert "electrode_off zygomaticus R" in text and "impedance" not in text.split("open alerts")[1]

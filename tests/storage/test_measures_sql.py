"""The database's session analysis (app.refresh_session, migration 0013) agrees with the Python
definitions of processors.measures, recomputed from the same stored envelopes, and both with the
closed-form truth of the signal written."""

from __future__ import annotations

import math
import uuid
from datetime import timedelta

import numpy as np
import psycopg
import pytest

from mimetic.config import Settings
from processors import measures as M
from processors import records as r
from processors.storage.writer import DbWriter
from tests.storage.test_session_analysis import CHANNEL_MAP, T0, register

pytestmark = pytest.mark.stack

FS_HZ = 40.0
# (task, repetition, start s, stop s)
WINDOWS = [("rest", 1, 0.5, 2.5), ("mvc_calibration", 1, 3.0, 5.0), ("smile", 1, 6.0, 8.0),
           ("smile", 2, 9.0, 11.0), ("eye_closure_tight", 1, 12.0, 14.0)]
# peak activity (µV) per channel [zyg L, zyg R, oculi L, oculi R] in each task; affected side R
PEAKS = {"mvc_calibration": [200.0, 100.0, 160.0, 80.0], "smile": [100.0, 50.0, 0.0, 30.0],
         "eye_closure_tight": [0.0, 0.0, 80.0, 40.0], "rest": [0.0] * 4}
DURATION_S = 15.0


def activity(t: float) -> tuple[str | None, list[float]]:
    """The muscles' own activity at t: a 0.5 s linear rise after each task start, then a plateau."""
    for task, _rep, a, b in WINDOWS:
        if a <= t < b:
            ramp = min(1.0, (t - a) / 0.5)
            return task, [p * ramp for p in PEAKS[task]]
    return None, [0.0] * 4


def envelope(k: int) -> list[float]:
    """Envelope sample k: rest noise alternating 3 / 5 µV (rest level sqrt(17)) plus the activity in power."""
    base = 3.0 if k % 2 == 0 else 5.0
    _task, act = activity(k / FS_HZ)
    return [math.sqrt(base * base + x * x) for x in act]


def records(device: str, session: uuid.UUID, t0=T0, calibration: bool = True) -> list[r.Record]:
    """The session's records starting at t0 (without the calibration's task window if not `calibration`)."""
    recs: list[r.Record] = []
    for j in range(int(DURATION_S * FS_HZ / 2)):  # 2 envelope samples per frame
        env = np.array([envelope(2 * j), envelope(2 * j + 1)], dtype=np.float32).T
        recs.append(r.EnvelopeFrame.from_array(env, device_id=device, session_id=session, seq=j,
                                               time=t0 + timedelta(seconds=2 * j / FS_HZ), fs_hz=FS_HZ))
    # two activations of zygomaticus L in the first smile (onset 0.3 s after the cue): one the worker could
    # not attribute (no markers yet), one it did; and one of zygomaticus R outside every task window
    for ch, side, on_s, task in ((0, "L", 6.3, None), (0, "L", 9.25, "smile"), (1, "R", 5.5, None)):
        recs.append(r.ActivationRecord(
            device_id=device, session_id=session, channel=ch, muscle="zygomaticus", side=side,
            onset=t0 + timedelta(seconds=on_s), offset=t0 + timedelta(seconds=on_s + 1.0),
            peak_uv=float(math.hypot(120.0, math.sqrt(17.0))), mean_uv=80.0, area_uv_s=80.0,
            task=task, repetition=2 if task else None, onset_latency_s=0.25 if task else None,
            target=True if task else None))
    for task, rep, a, b in WINDOWS:
        if task == "mvc_calibration" and not calibration:
            continue
        recs.append(r.TaskWindowRecord(device_id=device, session_id=session, task=task, repetition=rep,
                                       time=t0 + timedelta(seconds=a), time_end=t0 + timedelta(seconds=b)))
    recs.append(r.SessionSummary(session_id=session, device_id=device, therapy_type="biofeedback_exercise",
                                 started_at=t0, ended_at=t0 + timedelta(seconds=DURATION_S), status="ended",
                                 minutes=DURATION_S / 60, channel_map=CHANNEL_MAP, revision=1,
                                 computed_at=t0 + timedelta(seconds=DURATION_S)))
    return recs


def closed_form_level(task: str, ch: int) -> float:
    """RMS of the activity alone over the task's windows (independent of any envelope arithmetic)."""
    ts = [k / FS_HZ for k in range(int(DURATION_S * FS_HZ))]
    vals = [activity(t)[1][ch] for t in ts if activity(t)[0] == task]
    return math.sqrt(sum(v * v for v in vals) / len(vals))


def stored_envelopes(db: psycopg.Connection, device: str) -> tuple[np.ndarray, np.ndarray]:
    """(times s from T0, envelope (4, n)) read back from the envelope table."""
    ts, cols = [], []
    for time, fs, env in db.execute("select time, fs_hz, env from envelope where device_id = %s order by time",
                                    (device,)):
        a = np.asarray(env, dtype=np.float64)
        for i in range(a.shape[1]):
            ts.append((time - T0).total_seconds() + i / fs)
            cols.append(a[:, i])
    return np.asarray(ts), np.asarray(cols).T


def test_sql_session_measures_equal_the_python_definitions(settings: Settings, db: psycopg.Connection) -> None:
    device, _pid = register(db, "msq")
    session = uuid.uuid4()
    w = DbWriter(settings.db_dsn())
    try:
        w.write(records(device, session))
        assert w.refresh_sessions(settle_s=0) >= 1
    finally:
        w.close()
    sql = {m: row for m, *row in db.execute(
        "select muscle, ai, ratio, left_uv, right_uv, left_pct_mvc, right_pct_mvc, synkinesis "
        "from session_muscle_summary where session_id = %s", (session,))}
    syn = {(t, m): (i, f) for t, m, i, f in db.execute(
        "select target_task, muscle, index, flag from session_synkinesis where session_id = %s", (session,))}

    # the Python definitions over the stored envelopes
    t, env = stored_envelopes(db, device)

    def sel(task: str) -> np.ndarray:
        m = np.zeros(t.size, dtype=bool)
        for name, _rep, a, b in WINDOWS:
            if name == task:
                m |= (t >= a - 1e-9) & (t < b - 1e-9)
        return m

    rest = [M.rest_level_uv(env[c][sel("rest")]) for c in range(4)]
    assert rest == pytest.approx([math.sqrt(17.0)] * 4, rel=1e-5)

    def level(task: str, c: int) -> float:
        return M.window_level_uv(env[c][sel(task)], rest[c])

    for muscle, (cl, cr), task in (("zygomaticus", (0, 1), "smile"), ("orbicularis_oculi", (2, 3), "eye_closure_tight")):
        left, right = level(task, cl), level(task, cr)
        # the Python definition on stored envelopes = the closed form of the activity written
        assert (left, right) == pytest.approx((closed_form_level(task, cl), closed_form_level(task, cr)), rel=1e-4)
        ai = float(M.asymmetry_index(left, right))
        ratio = float(M.affected_ratio(left, right, "R"))
        ref = M.mvc_reference_uv(level("mvc_calibration", cl), level("mvc_calibration", cr), "R")
        got_ai, got_ratio, got_l, got_r, got_pl, got_pr, _syn = sql[muscle]
        assert (got_ai, got_ratio) == pytest.approx((ai, ratio), abs=1e-5)
        assert (got_l, got_r) == pytest.approx((left, right), rel=1e-5)
        assert (got_pl, got_pr) == pytest.approx((float(M.pct_mvc(left, ref)), float(M.pct_mvc(right, ref))), rel=1e-5)
        assert ai == pytest.approx(1 / 3, abs=1e-4)  # (100 - 50) / 150 and (80 - 40) / 120
        assert float(M.pct_mvc(left, ref)) == pytest.approx(50.0, rel=1e-3)  # the healthy side's MVC: 200 / 160

    # oculi co-activates on the affected side while smiling: index 1 in both; zygomaticus is silent
    # during eye closure: undefined (null), not flagged (before 0013: 0, or +-1 from rest noise)
    s_aff, s_hea = level("smile", 3), level("smile", 2)
    assert syn[("smile", "orbicularis_oculi")][0] == pytest.approx(
        float(M.synkinesis_index(s_aff, s_hea, rest[3], rest[2])), abs=1e-5)
    assert syn[("smile", "orbicularis_oculi")][1] is True
    assert math.isnan(float(M.synkinesis_index(level("eye_closure_tight", 1), level("eye_closure_tight", 0),
                                               rest[1], rest[0])))
    assert syn[("eye_closure_tight", "zygomaticus")] == (None, False)
    # the rest task itself and zygomaticus in eye closure: inactive pairs, no balance row (no made-up AI)
    kinds = {(m, t) for m, t in db.execute("select muscle, task from balance where session_id = %s", (session,))}
    assert ("zygomaticus", "rest") not in kinds and ("zygomaticus", "eye_closure_tight") not in kinds
    assert ("zygomaticus", "smile") in kinds and ("orbicularis_oculi", "smile") in kinds
    # activations: attributed where the worker could not, left alone where it did; peak as %MVC of
    # the healthy side's (L) calibration level: 120 µV of activity over 200 µV * rms(ramp)
    acts = {(c, round((o - T0).total_seconds(), 3)): (t, rep, lat, tg, pct)
            for c, o, t, rep, lat, tg, pct in db.execute(
        "select channel, onset, task, repetition, onset_latency_s, target, peak_pct_mvc from activation "
        "where session_id = %s", (session,))}
    ref = M.mvc_reference_uv(level("mvc_calibration", 0), level("mvc_calibration", 1), "R")
    t_, rep_, lat_, tg_, pct_ = acts[(0, 6.3)]
    assert (t_, rep_, tg_) == ("smile", 1, True) and lat_ == pytest.approx(0.3, abs=1e-4)
    assert pct_ == pytest.approx(100 * 120.0 / ref, rel=1e-4)
    assert acts[(0, 9.25)][:4] == ("smile", 2, pytest.approx(0.25), True)
    assert acts[(1, 5.5)][:4] == (None, None, None, None)


def test_pct_mvc_borrows_the_patients_latest_calibration(settings: Settings, db: psycopg.Connection) -> None:
    """A session without a calibration takes the reference of the patient's latest earlier session with
    its own (0019), and says so; a first session without one has none."""
    device, _pid = register(db, "mvf")
    first, second, third = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    w = DbWriter(settings.db_dsn())
    try:
        w.write(records(device, first, T0, calibration=False))       # nothing to borrow yet
        w.write(records(device, second, T0 + timedelta(days=1)))      # its own calibration
        w.write(records(device, third, T0 + timedelta(days=2), calibration=False))
        assert w.refresh_sessions(settle_s=0) >= 3
    finally:
        w.close()
    rows = {(sid, m): (pl, pr, ref, src) for sid, m, pl, pr, ref, src in db.execute(
        "select session_id, muscle, left_pct_mvc, right_pct_mvc, mvc_ref_uv, mvc_ref_session "
        "from session_muscle_summary where session_id = any(%s)", ([first, second, third],))}
    for muscle in ("zygomaticus", "orbicularis_oculi"):
        own_l, own_r, own_ref, own_src = rows[(second, muscle)]
        assert own_src == second and own_ref > 0
        pl, pr, ref, src = rows[(third, muscle)]
        assert src == second and ref == pytest.approx(own_ref)
        assert (pl, pr) == pytest.approx((own_l, own_r), rel=1e-5)   # same signal, same reference
        assert rows[(first, muscle)] == (None, None, None, None)
    # the borrowed reference also normalises the activations' peaks
    pct = db.execute("select peak_pct_mvc from activation where session_id = %s and channel = 0 order by onset",
                     (third,)).fetchall()
    ref = rows[(third, "zygomaticus")][2]
    assert pct and pct[0][0] == pytest.approx(100 * 120.0 / ref, rel=1e-4)

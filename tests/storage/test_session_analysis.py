"""In-database session analysis (migration 0006): task-window balance, muscle summary, synkinesis."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import numpy as np
import psycopg
import pytest

from mimetic.config import Settings
from processors import records as r
from processors.storage.jobs import run_rollup
from processors.storage.writer import DbWriter

pytestmark = pytest.mark.stack

T0 = datetime(2022, 2, 1, 10, 0, tzinfo=timezone.utc)
CHANNEL_MAP = [{"channel": 0, "muscle": "zygomaticus", "side": "L"},
               {"channel": 1, "muscle": "zygomaticus", "side": "R"},
               {"channel": 2, "muscle": "orbicularis_oculi", "side": "L"},
               {"channel": 3, "muscle": "orbicularis_oculi", "side": "R"}]
# (task, repetition, start s, stop s)
WINDOWS = [("smile", 1, 2.0, 4.0), ("smile", 2, 6.0, 8.0), ("smile", 3, 10.0, 12.0),
           ("eye_closure_tight", 1, 14.0, 16.0), ("eye_closure_tight", 2, 18.0, 20.0)]
LEVELS = {  # envelope µV per channel inside each task; 3 µV elsewhere. Affected side: R
    "smile": [100.0, 50.0, 5.0, 30.0],              # zyg AI 1/3; oculi co-activates on R (synkinesis)
    "eye_closure_tight": [5.0, 5.0, 80.0, 40.0],    # oculi AI 1/3; zyg quiet
}


def level(t: float, levels: dict) -> list[float]:
    for task, _rep, a, b in WINDOWS:
        if a <= t < b:
            return levels[task]
    return [3.0] * 4


def session_records(device: str, session: uuid.UUID, levels: dict = LEVELS, t0: datetime = T0,
                    seq0: int = 0) -> list[r.Record]:
    recs: list[r.Record] = []
    for k in range(int(22 / 0.05)):          # 50 ms frames, 2 envelope samples each (40 Hz)
        t, seq = k * 0.05, seq0 + k
        env = np.array([level(t, levels), level(t + 0.025, levels)], dtype=np.float32).T
        recs.append(r.EnvelopeFrame.from_array(env, device_id=device, session_id=session, seq=seq,
                                               time=t0 + timedelta(seconds=t), fs_hz=40.0))
    for task, rep, a, b in WINDOWS:
        recs.append(r.TaskWindowRecord(device_id=device, session_id=session, task=task, repetition=rep,
                                       time=t0 + timedelta(seconds=a), time_end=t0 + timedelta(seconds=b)))
    recs.append(r.SessionSummary(session_id=session, device_id=device, therapy_type="biofeedback_exercise",
                                 started_at=t0, ended_at=t0 + timedelta(seconds=22), status="ended", minutes=22 / 60,
                                 discomfort=1, channel_map=CHANNEL_MAP, revision=1,
                                 computed_at=t0 + timedelta(seconds=22)))
    return recs


def register(db: psycopg.Connection, kind: str, planned: tuple[int, float] | None = None) -> tuple[str, int]:
    """A clinic, an affected-side-R patient (optionally with a plan: sessions, minutes) and its device."""
    tag = uuid.uuid4().hex[:6]
    clinic, device = f"c-{tag}", f"dev-{kind}-{tag}"
    db.execute("insert into clinic (clinic_id, name) values (%s, %s)", (clinic, kind))
    sessions, minutes = planned or (None, None)
    pid = db.execute("insert into patient (clinic_id, code, affected_side, planned_sessions, planned_minutes) "
                     "values (%s, %s, 'R', %s, %s) returning patient_id",
                     (clinic, f"P-{kind.upper()}{tag}", sessions, minutes)).fetchone()[0]
    db.execute("insert into device (device_id, clinic_id, patient_id) values (%s, %s, %s)", (device, clinic, pid))
    return device, pid


def test_session_analysis_matches_the_definitions(settings: Settings, db: psycopg.Connection) -> None:
    (device, pid), session = register(db, "sa"), uuid.uuid4()
    w = DbWriter(settings.db_dsn())
    try:
        recs = session_records(device, session)
        # task windows first, frames later: the order between topics does not matter
        w.write([x for x in recs if not isinstance(x, r.EnvelopeFrame)])
        w.write([x for x in recs if isinstance(x, r.EnvelopeFrame)])
        assert w.refresh_sessions(settle_s=0) >= 1
    finally:
        w.close()
    rows = {m: (ai, ratio, syn, flag, reps) for m, ai, ratio, syn, flag, reps in db.execute(
        "select muscle, ai, ratio, synkinesis, synkinesis_flag, repetitions from session_muscle_summary "
        "where session_id = %s", (session,))}
    assert rows["zygomaticus"][:2] == pytest.approx((1 / 3, 0.5), abs=1e-5)
    assert rows["orbicularis_oculi"][:2] == pytest.approx((1 / 3, 0.5), abs=1e-5)
    assert rows["zygomaticus"][4] == 3 and rows["orbicularis_oculi"][4] == 2
    # oculi co-activates on the affected side while smiling; zygomaticus does not during eye closure
    assert rows["orbicularis_oculi"][2] == pytest.approx(25 / 35, abs=1e-5) and rows["orbicularis_oculi"][3]
    assert rows["zygomaticus"][2] == pytest.approx(0.0, abs=1e-6) and not rows["zygomaticus"][3]
    kinds = dict(db.execute("select window_kind, count(*) from balance where session_id = %s group by 1",
                            (session,)).fetchall())
    assert kinds == {"repetition": 10, "task": 4}
    # the registry row took the session's channel map; the progress view shows the session
    assert db.execute("select channel_map from therapy_session where session_id = %s",
                      (session,)).fetchone()[0] == CHANNEL_MAP
    prog = db.execute("select session_number, muscle, round(ai::numeric, 3), synkinesis_flag from patient_progress "
                      "where patient_id = %s order by muscle", (pid,)).fetchall()
    assert [(n, m, float(a), f) for n, m, a, f in prog] == [
        (1, "orbicularis_oculi", 0.333, True), (1, "zygomaticus", 0.333, False)]
    # recomputing changes nothing; a late duplicate frame marks the session again, same result
    before = db.execute("select * from balance where session_id = %s order by muscle, window_kind, time",
                        (session,)).fetchall()
    w = DbWriter(settings.db_dsn())
    try:
        w.write(session_records(device, session)[:5])
    finally:
        w.close()
    assert run_rollup(settings, since=T0, upto=T0 + timedelta(hours=1))["sessions_refreshed"] >= 1
    assert db.execute("select * from balance where session_id = %s order by muscle, window_kind, time",
                      (session,)).fetchall() == before
    syn = db.execute("select target_task, muscle, flag from session_synkinesis where session_id = %s order by 1, 2",
                     (session,)).fetchall()
    assert syn == [("eye_closure_tight", "zygomaticus", False), ("smile", "orbicularis_oculi", True)]


def test_refresh_keeps_a_sent_muscle_summary_it_cannot_recompute(settings: Settings,
                                                                 db: psycopg.Connection) -> None:
    """No channel map and no task windows: the summary the pipeline sent stays (migration 0009)."""
    device, session = f"dev-keep-{uuid.uuid4().hex[:6]}", uuid.uuid4()
    summary = r.SessionSummary(session_id=session, device_id=device, therapy_type="microcurrent", started_at=T0,
                               ended_at=T0 + timedelta(seconds=22), status="ended", minutes=22 / 60,
                               computed_at=T0 + timedelta(seconds=22),
                               muscles=[r.MuscleSummary(muscle="zygomaticus", ai=0.33, ratio=0.5)])
    frames = [x for x in session_records(device, session) if isinstance(x, r.EnvelopeFrame)]
    w = DbWriter(settings.db_dsn())
    try:
        w.write([summary, *frames])
        assert w.refresh_sessions(settle_s=0) >= 1
    finally:
        w.close()
    assert db.execute("select muscle, round(ai::numeric, 2)::float8 from session_muscle_summary "
                      "where session_id = %s", (session,)).fetchall() == [("zygomaticus", 0.33)]
    assert db.execute("select count(*) from app.session_dirty where session_id = %s", (session,)).fetchone()[0] == 0


def test_samples_under_a_channel_alert_are_left_out_of_the_analysis(settings: Settings,
                                                                    db: psycopg.Connection) -> None:
    """Zygomaticus R reads 500 µV during the second smile (a lifted electrode), flagged by an
    electrode_off alert on its channel: its AI comes from the first and third smiles only, on both
    sides (migration 0009). Orbicularis oculi R is inflated during the second eye closure, inside an
    over-current episode (no channel: every muscle): its AI comes from the first eye closure."""
    device, session = register(db, "gate")[0], uuid.uuid4()
    recs = session_records(device, session)
    for k, rec in enumerate(recs):
        t_s = (rec.time - T0).total_seconds() if isinstance(rec, r.EnvelopeFrame) else -1
        if 6.0 <= t_s < 8.0 or 18.0 <= t_s < 20.0:
            env = rec.array.copy()
            if t_s < 8.0:
                env[1] = 500.0  # the second smile: channel 1 picks up a lifted electrode
            else:
                env[3] += 300.0  # the second eye closure: stimulation artefacts of an over-current episode
            recs[k] = r.EnvelopeFrame.from_array(env, device_id=device, session_id=session, seq=rec.seq,
                                                 time=rec.time, fs_hz=rec.fs_hz)
    for kind, channel, t0, t1 in (("electrode_off", 1, 5.5, 8.5), ("over_current", None, 17.5, 20.5)):
        aid = r.alert_id(device, kind, T0 + timedelta(seconds=t0), channel)
        for state, t in (("raised", t0), ("cleared", t1)):
            recs.append(r.AlertRecord(alert_id=aid, device_id=device, session_id=session, alert_type=kind,
                                      severity="warning", state=state, time=T0 + timedelta(seconds=t),
                                      raised_at=T0 + timedelta(seconds=t0), channel=channel))
    w = DbWriter(settings.db_dsn())
    try:
        w.write(recs)
        assert w.refresh_sessions(settle_s=0) >= 1
    finally:
        w.close()
    rows = {m: (ai, reps) for m, ai, reps in db.execute(
        "select muscle, ai, repetitions from session_muscle_summary where session_id = %s", (session,))}
    assert rows["zygomaticus"][0] == pytest.approx(1 / 3, abs=1e-5)
    assert rows["orbicularis_oculi"][0] == pytest.approx(1 / 3, abs=1e-5)
    reps = db.execute("select repetition from balance where session_id = %s and window_kind = 'repetition' "
                      "and muscle = 'zygomaticus' and task = 'smile' order by repetition", (session,)).fetchall()
    assert reps == [(1,), (3,)]
    assert db.execute("select repetitions from session_muscle_summary where session_id = %s "
                      "and muscle = 'orbicularis_oculi'", (session,)).fetchone()[0] == 1


def test_outcome_and_responder_views(settings: Settings, db: psycopg.Connection) -> None:
    device, pid = register(db, "resp", planned=(10, 20))
    better = {"smile": [100.0, 90.0, 5.0, 6.0], "eye_closure_tight": [5.0, 5.0, 80.0, 72.0]}
    w = DbWriter(settings.db_dsn())
    try:
        w.write(session_records(device, uuid.uuid4()))
        w.write(session_records(device, uuid.uuid4(), better, T0 + timedelta(days=2), seq0=1000))
        assert w.refresh_sessions(settle_s=0) >= 2
    finally:
        w.close()
    out = dict(db.execute("select muscle, round(abs_ai_improvement::numeric, 3) from patient_outcome "
                          "where patient_id = %s", (pid,)).fetchall())
    assert float(out["zygomaticus"]) == pytest.approx(1 / 3 - 10 / 190, abs=1e-3)
    resp = db.execute("select sessions, responder from patient_responder where patient_id = %s", (pid,)).fetchone()
    assert resp == (2, True)
    adh = db.execute("select sessions_done, plan_done_pct, mean_days_between from patient_adherence "
                     "where patient_id = %s", (pid,)).fetchone()
    assert adh[0] == 2 and float(adh[1]) == 20.0 and float(adh[2]) == 2.0

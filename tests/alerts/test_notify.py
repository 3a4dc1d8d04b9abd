"""The notifier against the real Kafka and database: outage, SIGKILL, SMTP, escalation, ack, audit."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from datetime import timedelta

import psycopg
import pytest

from alerts.receivers import add_receiver, add_token, list_receivers, read_secret, remove_receiver
from mimetic.config import Settings
from processors import records as r

from .conftest import T0, NotifierProcess, WebhookReceiver, alert, produce, wait_until

pytestmark = pytest.mark.stack

SAFETY = ("over_current", "discomfort", "skin_reaction")
FAULTS = ("electrode_off", "battery_low", "data_gap")


def _register(conn: psycopg.Connection, clinic: str, device: str, patient_code: str | None = None) -> None:
    conn.execute("insert into clinic (clinic_id, name) values (%s, %s) on conflict do nothing", (clinic, clinic))
    pid = None
    if patient_code:
        pid = conn.execute("insert into patient (clinic_id, code, affected_side) values (%s, %s, 'L') "
                           "returning patient_id", (clinic, patient_code)).fetchone()[0]
    conn.execute("insert into device (device_id, clinic_id, patient_id) values (%s, %s, %s)", (device, clinic, pid))


def _webhook(s: Settings, conn, w: WebhookReceiver, name: str, path: str, clinic: str | None, order: int = 0):
    rec, secret = add_receiver(s, conn, name, "webhook", w.url(path), clinic, order)
    w.secrets[path] = secret
    return rec


def _notifier_login(s: Settings, conn, name: str) -> None:
    """A login in the group `mimetic_notifier` only, made by `mimetic roles create`'s function."""
    from processors.storage.roles import create_login

    create_login(s, name, "notifier")


def _drop_login(s: Settings, conn, name: str) -> None:
    from processors.storage.roles import drop_login

    drop_login(s, name)


def _deliveries(conn, alert_ids: list[str]) -> list[tuple]:
    return conn.execute("select alert_id, state, receiver_id, status, attempts from app.alert_delivery "
                        "where alert_id = any(%s)", (alert_ids,)).fetchall()


@pytest.mark.slow
def test_receiver_down_30s_and_notifier_killed_nothing_lost_nothing_twice(
        notify_settings: Settings, notifier: NotifierProcess, webhook: WebhookReceiver, db) -> None:
    s = notify_settings
    tag = uuid.uuid4().hex[:6]
    ca, cb, da, db_ = f"ca-{tag}", f"cb-{tag}", f"dev-a-{tag}", f"dev-b-{tag}"
    _register(db, ca, da)
    _register(db, cb, db_)
    _webhook(s, db, webhook, f"ops-{tag}", "/ops", None)
    _webhook(s, db, webhook, f"a-{tag}", "/clinic-a", ca)
    _webhook(s, db, webhook, f"b-{tag}", "/clinic-b", cb)
    types = SAFETY + FAULTS
    episodes = [(da if i % 2 else db_, types[i % len(types)], i) for i in range(60)]
    recs = []
    for dev, t, i in episodes:
        sev = "critical" if t == "over_current" else "warning"
        recs += [alert(dev, t, i, "raised", sev), alert(dev, t, i, "cleared", sev)]
    expected = {"/ops": set(), "/clinic-a": set(), "/clinic-b": set()}
    for rec in recs:
        path = "/ops" if rec.alert_type in FAULTS else ("/clinic-a" if rec.device_id == da else "/clinic-b")
        expected[path].add(f"{rec.alert_id}:{rec.state}")
    ids = sorted({x.alert_id for x in recs})

    # the receiver is down (nothing listens on its port); the notifier takes the first half and is killed
    t_down = time.monotonic()
    notifier.start()
    produce(s, recs[:60])
    wait_until(lambda: db.execute("select count(*) from app.alert_notice where alert_id = any(%s)",
                                  (ids,)).fetchone()[0] > 0, 30, "the first notices")
    notifier.kill()
    produce(s, recs[60:])
    notifier.start()
    wait_until(lambda: db.execute("select count(*) from app.alert_notice where alert_id = any(%s)",
                                  (ids,)).fetchone()[0] == len(recs), 30, "every notice, after the restart")
    wait_until(lambda: db.execute("select count(*) from app.alert_delivery where alert_id = any(%s) "
                                  "and attempts >= 2", (ids,)).fetchone()[0] > 0, 20, "retries")
    pending = _deliveries(db, ids)
    assert len(pending) == len(recs) and {row[3] for row in pending} == {"pending"}
    assert not webhook.snapshot()

    time.sleep(max(0.0, 30 - (time.monotonic() - t_down)))
    webhook.start()                                       # up again after 30 s
    t_up = time.monotonic()
    wait_until(lambda: all(webhook.keys(p) == k for p, k in expected.items()), 30,
               "every notification at its receiver", 0.5)
    late_s = time.monotonic() - t_up
    wait_until(lambda: {row[3] for row in _deliveries(db, ids)} == {"delivered"}, 10, "all recorded delivered")

    hits = webhook.snapshot()
    assert all(h.signed for h in hits), "every request carries a valid HMAC"
    for path, keys in expected.items():
        got = [h.key for h in hits if h.path == path]
        assert Counter(got) == Counter(keys), f"{path}: each key accepted exactly once"   # nothing twice
        assert all(json.loads(h.body)["idempotency_key"] == h.key for h in hits if h.path == path)
    # a receiver hears of a raise before its clear
    first = {}
    for n, h in enumerate(hits):
        first.setdefault(h.key, n)
    for aid in ids:
        raised, cleared = f"{aid}:raised", f"{aid}:cleared"
        assert first[raised] < first[cleared], aid
    audit = db.execute("select alert_id, state, receiver_id from app.alert_audit where action = 'delivered' "
                       "and alert_id = any(%s)", (ids,)).fetchall()
    assert len(audit) == len(set(audit)) == len(recs)
    assert late_s < 10, f"delivered {late_s:.1f}s after the receiver came back"

    # a notifier killed between sends and their records: the repeats carry the same key and body
    webhook.delay_s = 0.3
    more = []
    for i in range(100, 120):
        more += [alert(da, "electrode_off", i), alert(da, "electrode_off", i, "cleared")]
    more_keys = {f"{x.alert_id}:{x.state}" for x in more}
    produce(s, more)
    wait_until(lambda: len(webhook.keys("/ops") & more_keys) >= 5, 20, "some of the second batch")
    webhook.delay_s = 30.0        # the next request is received, then held: killed before its answer
    n_hits = len(webhook.snapshot())
    wait_until(lambda: len(webhook.snapshot()) > n_hits, 10, "a request in flight")
    notifier.kill()
    webhook.delay_s = 0.0
    notifier.start()
    wait_until(lambda: more_keys <= webhook.keys("/ops"), 30, "the second batch after the kill", 0.5)
    more_ids = sorted({x.alert_id for x in more})
    wait_until(lambda: {row[3] for row in _deliveries(db, more_ids)} == {"delivered"}, 10, "recorded")
    hits = [h for h in webhook.snapshot() if h.key in more_keys]
    assert Counter(h.key for h in hits if h.new) == Counter(more_keys)   # each new exactly once
    for h in hits:
        if not h.new:
            assert h.body == next(x.body for x in hits if x.key == h.key and x.new)
    repeats = len(hits) - len(more_keys)
    assert 1 <= repeats <= 2, f"{repeats} repeats: the send in flight at the kill, sent again"
    audit = db.execute("select alert_id, state from app.alert_audit where action = 'delivered' "
                       "and alert_id = any(%s)", (more_ids,)).fetchall()
    assert len(audit) == len(set(audit)) == len(more)


@pytest.mark.slow
def test_smtp_escalation_acknowledgement_audit_and_dashboards(
        notify_settings: Settings, notifier: NotifierProcess, webhook: WebhookReceiver, smtp, db) -> None:
    smtp_port, inbox = smtp
    tag = uuid.uuid4().hex[:6]
    login = f"notify_{tag}"     # the notifier runs with the grants of migration 0011 only
    _notifier_login(notify_settings, db, login)
    s = notify_settings.model_copy(update={"notify_smtp_port": smtp_port, "notify_escalate_after_s": 2.0,
                                           "notify_pg_user": login})
    notifier.s = s
    try:
        _smtp_escalation_ack(s, notifier, webhook, inbox, db, tag)
        assert f"database login {login})" in notifier.logs()
        assert "skipping alert record 'bad\\x00id'" in notifier.logs()
    finally:
        notifier.stop_all()
        _drop_login(s, db, login)


def _smtp_escalation_ack(s: Settings, notifier: NotifierProcess, webhook: WebhookReceiver, inbox, db,
                         tag: str) -> None:
    clinic, other, dev, code = f"cc-{tag}", f"cd-{tag}", f"dev-c-{tag}", f"P-{tag.upper()}"
    _register(db, clinic, dev, code)
    _register(db, other, f"dev-d-{tag}")
    _webhook(s, db, webhook, f"ward-{tag}", "/ward", clinic, 0)
    add_receiver(s, db, f"head-{tag}", "email", f"head-{tag}@clinic.example", clinic, 1)
    add_receiver(s, db, f"ops-{tag}", "email", f"ops-{tag}@ops.example", None, 0)
    kim, stranger = add_token(db, f"dr.kim-{tag}", clinic), add_token(db, f"dr.x-{tag}", other)

    sid = uuid.uuid4()
    db.execute("insert into therapy_session (session_id, patient_id, device_id, therapy_type, started_at) "
               "select %s, patient_id, %s, 'microcurrent', %s from device where device_id = %s",
               (sid, dev, T0, dev))
    a1 = alert(dev, "over_current", 1, severity="critical", session_id=sid)
    a2 = alert(dev, "over_current", 2, severity="critical", session_id=sid)
    f1 = alert(dev, "electrode_off", 3, session_id=sid)
    from processors.storage.writer import DbWriter   # the sink's writer: the rows dashboards read

    w = DbWriter(s.db_dsn())
    try:
        w.write([a1, a2, f1])
    finally:
        w.close()
    # a record the database refuses (NUL bytes) ahead of them on the same partition: skipped, no stall
    poison = r.AlertRecord(alert_id="bad\x00id", device_id=dev, alert_type="over_current", severity="critical",
                           state="raised", time=T0, raised_at=T0, message="nul \x00 byte")
    webhook.start()
    notifier.start()
    produce(s, [poison, a1, a2, f1])
    wait_until(lambda: {f"{a1.alert_id}:raised", f"{a2.alert_id}:raised"} <= webhook.keys("/ward"), 20,
               "the ward's webhook")

    api = f"http://127.0.0.1:{s.notify_port}"

    def post(path: str, token: str | None, note: str = "") -> tuple[int, dict]:
        req = urllib.request.Request(api + path, data=json.dumps({"note": note}).encode(), method="POST",
                                     headers={"Content-Type": "application/json"}
                                     | ({"Authorization": f"Bearer {token}"} if token else {}))
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, {}

    assert post(f"/alerts/{a1.alert_id}/ack", None)[0] == 401
    assert post(f"/alerts/{a1.alert_id}/ack", "mnt_wrong")[0] == 401
    assert post(f"/alerts/{a1.alert_id}/ack", stranger)[0] == 404          # another clinic's alert
    status, res = post(f"/alerts/{a1.alert_id}/ack", kim, "stopped stimulation, called the patient")
    assert status == 200 and res["done"] and res["by"] == f"dr.kim-{tag}"
    assert post(f"/alerts/{a1.alert_id}/ack", kim)[1]["done"] is False     # once

    def get(path: str, token: str) -> list[dict]:
        req = urllib.request.Request(api + path, headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read())

    seen = {x["alert_id"]: x for x in get("/alerts", kim)}
    assert {a1.alert_id, a2.alert_id, f1.alert_id} <= set(seen)
    assert seen[a1.alert_id]["acknowledged_by"] == f"dr.kim-{tag}" and seen[a2.alert_id]["acknowledged_by"] is None
    assert not {a1.alert_id, a2.alert_id, f1.alert_id} & {x["alert_id"] for x in get("/alerts?all=1", stranger)}

    # a2 was not acknowledged: after 2 s it goes to tier 1 (the head of the clinic, by e-mail)
    def mail_to(addr: str) -> list:
        return [m for rcpt, m in inbox.messages if addr in rcpt]

    wait_until(lambda: mail_to(f"head-{tag}@clinic.example"), 15, "the escalation e-mail")
    wait_until(lambda: mail_to(f"ops-{tag}@ops.example"), 10, "the operators' e-mail")
    time.sleep(3 * s.notify_tick_s + 0.5)
    head = mail_to(f"head-{tag}@clinic.example")
    assert [m["X-Mimetic-Idempotency-Key"] for m in head] == [f"{a2.alert_id}:raised"]   # not a1
    assert "over current raised" in head[0]["Subject"] and "Escalated" in head[0].get_payload()
    ops = mail_to(f"ops-{tag}@ops.example")
    assert [m["X-Mimetic-Idempotency-Key"] for m in ops] == [f"{f1.alert_id}:raised"]
    assert ops[0]["Message-ID"].endswith("@mimetic.alerts>")

    # resolve through the CLI; list and audit
    from typer.testing import CliRunner

    from mimetic.cli import app
    from mimetic.config import get_settings

    runner = CliRunner()
    import os

    old = os.environ.get("MIMETIC_PG_DATABASE")
    os.environ["MIMETIC_PG_DATABASE"] = s.pg_database
    get_settings.cache_clear()
    try:
        res = runner.invoke(app, ["alerts", "resolve", a2.alert_id, "--by", "nurse.lee", "--note", "electrode"])
        assert res.exit_code == 0 and "resolved by nurse.lee" in res.output, res.output
        res = runner.invoke(app, ["alerts", "list", "--all", "--clinic", clinic, "--json"])
        assert res.exit_code == 0, res.output
        listed = {x["alert_id"]: x for x in json.loads(res.output)}
        res_audit = runner.invoke(app, ["alerts", "audit", a2.alert_id])
        assert res.exit_code == 0
        assert runner.invoke(app, ["alerts", "ack", "no-such-alert", "--by", "x"]).exit_code != 0
    finally:
        if old is None:
            os.environ.pop("MIMETIC_PG_DATABASE", None)
        else:
            os.environ["MIMETIC_PG_DATABASE"] = old
        get_settings.cache_clear()
    assert listed[a1.alert_id]["acknowledged_by"] == f"dr.kim-{tag}" and listed[a1.alert_id]["resolved_at"] is None
    assert listed[a2.alert_id]["resolved_by"] == "nurse.lee" and listed[a2.alert_id]["escalated_order"] == 1
    assert listed[f1.alert_id]["acknowledged_by"] is None and listed[f1.alert_id]["delivered"] == 1
    for word in ("delivered", "escalated", "resolved", "acknowledged"):
        assert word in res_audit.output

    actions = db.execute("select alert_id, action, actor from app.alert_audit where alert_id = any(%s) "
                         "order by audit_id", ([a1.alert_id, a2.alert_id, f1.alert_id],)).fetchall()
    assert [(x[1], x[2]) for x in actions if x[0] == a1.alert_id] == [
        ("delivered", "notifier"), ("acknowledged", f"dr.kim-{tag}")]
    a2_actions = [(x[1], x[2]) for x in actions if x[0] == a2.alert_id]
    assert a2_actions == [("delivered", "notifier"), ("escalated", "notifier"), ("delivered", "notifier"),
                          ("resolved", "nurse.lee"), ("acknowledged", "nurse.lee")]
    with pytest.raises(psycopg.errors.RaiseException):
        db.execute("update app.alert_audit set actor = 'me' where alert_id = %s", (a1.alert_id,))
    with pytest.raises(psycopg.errors.RaiseException):
        db.execute("delete from app.alert_audit where alert_id = %s", (a1.alert_id,))

    _delivery_latency_on_metrics(notifier)
    _dashboards_show_acknowledgement(s, clinic, other, code, a1, a2)


def _delivery_latency_on_metrics(notifier: NotifierProcess) -> None:
    """/metrics has the delivery latency histogram per receiver kind, state and reason: the ward's
    two raises by webhook, the escalation and the operators' raise by e-mail (dated T0, a day ago:
    beyond the 4 h bucket)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{notifier.admin_port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    series = {}
    for line in text.splitlines():
        if line.startswith("mimetic_notify_delivery_latency_seconds_"):
            name, value = line.rsplit(" ", 1)
            series[name] = float(value)
    count = "mimetic_notify_delivery_latency_seconds_count"
    assert series[f'{count}{{kind="webhook",reason="audience",state="raised"}}'] >= 2, series
    assert series[f'{count}{{kind="email",reason="escalation",state="raised"}}'] == 1, series
    assert series[f'{count}{{kind="email",reason="audience",state="raised"}}'] >= 1, series
    le_4h = ('mimetic_notify_delivery_latency_seconds_bucket'
             '{kind="email",le="14400.0",reason="escalation",state="raised"}')
    assert series[le_4h] == 0, series


def _panel_sql(title: str) -> str:
    from dashboards.definitions import all_dashboards

    for d in all_dashboards():
        for p in d.items:
            if getattr(p, "title", None) == title:
                return p.queries[0].sql
    raise KeyError(title)


def _dashboards_show_acknowledgement(s: Settings, clinic: str, other: str, code: str, a1: r.AlertRecord,
                                     a2: r.AlertRecord) -> None:
    """The clinic's and the operators' alert panels show who acknowledged, under their read-only logins."""
    from dashboards.macros import TimeRange, Variable, interpolate
    from processors.storage import roles

    tr = TimeRange(T0 - timedelta(hours=1), T0 + timedelta(hours=1))
    sql = interpolate(_panel_sql("Alerts during therapy"), {"patient": Variable("patient", code)}, tr,
                      timescaledb=True)
    mine = f"notify_clinic_{clinic.replace('-', '_')}"
    theirs = f"notify_clinic_{other.replace('-', '_')}"
    roles.create_login(s, mine, "clinic", clinic)
    roles.create_login(s, theirs, "clinic", other)
    roles.create_login(s, "notify_operator", "operator")
    try:
        with psycopg.connect(roles.login_dsn(s, mine), autocommit=True) as conn:
            cur = conn.execute(sql)
            rows = [dict(zip([c.name for c in cur.description], row)) for row in cur.fetchall()]
            handling = conn.execute("select alert_id from alert_handling").fetchall()
        by_time = {row["Raised"]: row for row in rows}
        assert by_time[a1.raised_at]["Acknowledged by"].startswith("dr.kim-")
        assert by_time[a2.raised_at]["Resolved"] is not None and by_time[a2.raised_at]["Acknowledged by"] == "nurse.lee"
        assert {a1.alert_id, a2.alert_id} <= {h[0] for h in handling}
        with psycopg.connect(roles.login_dsn(s, theirs), autocommit=True) as conn:
            assert conn.execute(sql).fetchall() == []
            assert conn.execute("select count(*) from alert_handling where alert_id = any(%s)",
                                ([a1.alert_id, a2.alert_id],)).fetchone()[0] == 0
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("select * from app.alert_audit")
        ops_sql = interpolate(_panel_sql("Active alerts (detail)"),
                              {"clinic": Variable("clinic", [clinic], [clinic], multi=True)}, tr,
                              timescaledb=True)
        with psycopg.connect(roles.login_dsn(s, "notify_operator"), autocommit=True) as conn:
            cur = conn.execute(ops_sql)
            cols = [c.name for c in cur.description]
            acked = {row[cols.index("Acknowledged by")] for row in cur.fetchall()}
        assert any((x or "").startswith("dr.kim-") for x in acked), acked
    finally:
        for login in (mine, theirs, "notify_operator"):
            roles.drop_login(s, login)


def test_receivers_and_tokens_keep_secrets_out_of_the_database(notify_settings: Settings, db) -> None:
    s = notify_settings
    tag = uuid.uuid4().hex[:6]
    rec, secret = add_receiver(s, db, f"hook-{tag}", "webhook", "https://example.org/hook", None, 0)
    path = s.notify_secrets_path / rec.secret_ref
    assert read_secret(s, rec.secret_ref) == secret and len(secret) >= 40
    assert path.stat().st_mode & 0o777 == 0o600 and s.notify_secrets_path.stat().st_mode & 0o777 == 0o700
    dump = json.dumps(db.execute("select to_jsonb(x) from app.alert_receiver x").fetchall(), default=str)
    assert secret not in dump and rec.name in [x.name for x in list_receivers(db)]
    from alerts.receivers import ReceiverError

    for bad in [("webhook", "ftp://x"), ("email", "not-an-address"), ("sms", "123")]:
        with pytest.raises(ReceiverError):
            add_receiver(s, db, f"bad-{tag}", *bad)
    token = add_token(db, f"op-{tag}")
    stored = db.execute("select token_sha256 from app.alert_api_token where name = %s", (f"op-{tag}",)).fetchone()[0]
    assert token not in stored and len(stored) == 64
    remove_receiver(s, db, rec.name)
    assert not path.exists()

"""The delivery queue in the real database, without Kafka: audiences, tiers, replays, ordering."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from psycopg import AsyncConnection

from alerts import actions, queue
from alerts.receivers import add_receiver
from mimetic.config import Settings

from .conftest import alert

pytestmark = pytest.mark.stack


def _run(s: Settings, fn):
    async def main():
        async with await AsyncConnection.connect(s.db_dsn(), autocommit=True) as conn:
            return await fn(conn)
    return asyncio.run(main())


def test_tiers_escalation_clears_and_replays(notify_settings: Settings, db) -> None:
    s = notify_settings
    tag = uuid.uuid4().hex[:6]
    clinic, dev, lost = f"cq-{tag}", f"dev-q-{tag}", f"dev-unknown-{tag}"
    db.execute("insert into clinic (clinic_id, name) values (%s, 'Q')", (clinic,))
    db.execute("insert into device (device_id, clinic_id) values (%s, %s)", (dev, clinic))
    ids = {}
    for name, c, order in [("t0", clinic, 0), ("t1", clinic, 1), ("t3", clinic, 3), ("ops", None, 0)]:
        ids[name] = add_receiver(s, db, f"{name}-{tag}", "email", f"{name}@x.example", c, order)[0].receiver_id
    raised = alert(dev, "over_current", 1, severity="critical")
    cleared = alert(dev, "over_current", 1, "cleared", severity="critical")
    warn = alert(dev, "discomfort", 2)
    orphan = alert(lost, "skin_reaction", 3)          # no known clinic: the operators are told

    def told(alert_id: str, state: str) -> set[int]:
        return {r[0] for r in db.execute("select receiver_id from app.alert_delivery where alert_id = %s "
                                         "and state = %s", (alert_id, state))}

    assert _run(s, lambda c: queue.enqueue(c, [raised, warn, orphan])) == 3
    assert _run(s, lambda c: queue.enqueue(c, [raised, warn, orphan])) == 0            # a replay: nothing new
    assert told(raised.alert_id, "raised") == {ids["t0"]} and told(warn.alert_id, "raised") == {ids["t0"]}
    assert told(orphan.alert_id, "raised") == {ids["ops"]}

    # the clear is not handed out while its raise to the same receiver is pending
    due = _run(s, lambda c: queue.claim_due(c, 100, 30.0))
    assert {(d.alert_id, d.state) for d in due} >= {(raised.alert_id, "raised")}
    assert _run(s, lambda c: queue.enqueue(c, [cleared])) == 1
    assert not [d for d in _run(s, lambda c: queue.claim_due(c, 100, 30.0)) if d.alert_id == raised.alert_id]
    for d in due:
        _run(s, lambda c, d=d: queue.record_delivered(c, d, "test"))
    assert [d.state for d in _run(s, lambda c: queue.claim_due(c, 100, 30.0, busy=[ids["ops"]]))
            if d.alert_id == raised.alert_id] == ["cleared"]

    # escalation: tier 1, then tier 3 (with the clear: it cleared meanwhile), then nothing further
    assert _run(s, lambda c: queue.escalate_due(c, 0.0)) == 1                          # the warning never
    assert told(raised.alert_id, "raised") == told(raised.alert_id, "cleared") == {ids["t0"], ids["t1"]}
    assert _run(s, lambda c: queue.escalate_due(c, 0.0)) == 1
    assert told(raised.alert_id, "raised") == told(raised.alert_id, "cleared") == {ids["t0"], ids["t1"], ids["t3"]}
    assert _run(s, lambda c: queue.escalate_due(c, 0.0)) == 0
    assert db.execute("select escalated_order from alert_handling where alert_id = %s",
                      (raised.alert_id,)).fetchone()[0] == 3
    # a clear after an escalation reaches every tier told of the raise
    second = alert(dev, "over_current", 9, severity="critical")
    _run(s, lambda c: queue.enqueue(c, [second]))
    assert _run(s, lambda c: queue.escalate_due(c, 0.0)) == 1
    _run(s, lambda c: queue.enqueue(c, [alert(dev, "over_current", 9, "cleared", severity="critical")]))
    assert told(second.alert_id, "cleared") == {ids["t0"], ids["t1"]}
    # acknowledged: no further escalation
    res = _run(s, lambda c: actions.acknowledge(c, second.alert_id, actions.Scope("dr.q", clinic), "seen"))
    assert res.done and _run(s, lambda c: queue.escalate_due(c, 0.0)) == 0
    with pytest.raises(actions.NoSuchAlert):
        _run(s, lambda c: actions.acknowledge(c, second.alert_id, actions.Scope("dr.z", "another-clinic")))
    escalations = db.execute("select count(*) from app.alert_audit where action = 'escalated' "
                             "and alert_id = any(%s)", ([raised.alert_id, second.alert_id],)).fetchone()[0]
    assert escalations == 3

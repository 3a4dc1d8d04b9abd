"""Alert raise/clear with persistence, hysteresis and de-duplication."""

from processors.alerting import AlertTracker


def test_raise_needs_persistence_and_repeats_are_silent() -> None:
    t = AlertTracker("dev1")
    assert t.observe("electrode_off", True, 100.0, channel=2) == []  # raise_after_s = 1
    assert t.observe("electrode_off", True, 100.5, channel=2) == []
    ev = t.observe("electrode_off", True, 101.0, channel=2)
    assert [e.state for e in ev] == ["raised"] and ev[0].time_s == 100.0 and ev[0].channel == 2
    assert t.observe("electrode_off", True, 102.0, channel=2) == []  # de-duplicated
    assert t.is_active("electrode_off", 2) and not t.is_active("electrode_off", 3)


def test_clear_needs_persistence_and_keeps_the_alert_id() -> None:
    t = AlertTracker("dev1")
    raised = t.observe("over_current", True, 10.0, value=750.0)
    assert raised[0].severity == "critical" and raised[0].state == "raised"
    assert t.observe("over_current", False, 11.0) == []
    assert t.observe("over_current", True, 12.0) == []  # a blip back resets the clear timer
    assert t.observe("over_current", False, 13.0) == []
    cleared = t.observe("over_current", False, 18.0)
    assert [e.state for e in cleared] == ["cleared"]
    assert cleared[0].alert_id == raised[0].alert_id


def test_short_glitch_never_raises() -> None:
    t = AlertTracker("dev1")
    for i in range(10):
        assert t.observe("clipping", i % 2 == 0, 50.0 + 0.4 * i, channel=0) == []


def test_state_round_trip() -> None:
    t = AlertTracker("dev9")
    t.observe("low_battery", True, 5.0, value=9.0)
    t2 = AlertTracker.from_state(t.to_state())
    assert t2.active() == [("low_battery", None)]
    assert t2.observe("low_battery", False, 6.0)[0].state == "cleared"

"""When an alert is explained by the simulator's truth: the one rule the demo's table, its test
and `mimetic bench alerts` use.

An alert (one raised episode) of a simulated device is *explained* when, in the session it is
attached to:

1. a fault was injected whose alert type it is (`ingest.simulator.FAULT_ALERT`), on the
   fault's channel for a channel fault; or
2. a fault was injected that causes it as a side effect on the fault's channel (`SECONDARY`:
   a lifted electrode picks up mains hum and rails; a drifting one, hum); or
3. its type is explained by definition (`BY_DEFINITION`): a patient's own report of
   discomfort or a skin reaction, and a counter restart, are events the device reports, not
   faults a detector can get wrong.

Anything else is *unexplained*: a false alert. An injected fault *must* raise its own alert
(`expected_alert`), except a device silence shorter than the silence threshold. `mimetic bench alerts` also requires the alert
to fall within the fault's time span (`processors.worker.alert_bench`); the demo, which
looks at stored episodes, asks only for the session.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ingest.simulator import FAULT_ALERT

#: fault kind -> alert types it causes besides its own, on its channel, while it lasts
SECONDARY: dict[str, frozenset[str]] = {
    "electrode_liftoff": frozenset({"mains_noise", "clipping"}),
    "impedance_drift": frozenset({"mains_noise"}),
}
#: alert types that are explained by what they are, with why
BY_DEFINITION: dict[str, str] = {
    "discomfort": "the patient's own report",
    "sequence_restart": "the device's counter restarted: an event it reports",
}


def expected_alert(fault: Mapping[str, Any], silent_after_s: float) -> str | None:
    """The alert an injected fault must raise (`FAULT_ALERT`), or None: a device silence shorter
    than MIMETIC_WORKER_SILENT_AFTER_S (cut short by its session's end) is no `device_silent`."""
    kind = FAULT_ALERT.get(fault["type"])
    if kind == "device_silent" and fault["end_s"] - fault["start_s"] < silent_after_s:
        return None
    return kind


def _on_channel(fault: Mapping[str, Any], channel: int | None) -> bool:
    return fault.get("channel") is None or fault["channel"] == channel


def causes(fault: Mapping[str, Any], alert_type: str, channel: int | None, own: bool = True) -> bool:
    """Whether an injected `fault` (a dict with ``type`` and ``channel``) causes an alert of
    `alert_type` on `channel`: as its own alert (`own`) or as a side effect."""
    types = {FAULT_ALERT.get(fault["type"])} if own else SECONDARY.get(fault["type"], frozenset())
    return alert_type in types and _on_channel(fault, channel)


def explanation(alert_type: str, channel: int | None, faults: Iterable[Mapping[str, Any]]) -> str | None:
    """Why an alert attached to a session with these injected `faults` was raised (the fault
    kind, ``"<kind> (side effect)"``, or ``"by definition"``), or None: unexplained."""
    if alert_type in BY_DEFINITION:
        return "by definition"
    faults = list(faults)
    for f in faults:
        if causes(f, alert_type, channel):
            return f["type"]
    for f in faults:
        if causes(f, alert_type, channel, own=False):
            return f"{f['type']} (side effect)"
    return None

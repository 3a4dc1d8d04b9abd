"""The demo's alert table: per alert type, the faults injected and raised, the episodes stored,
and how many of those no injected fault explains (`ingest.alert_truth`: the one rule)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import psycopg
from rich import box
from rich.table import Table

from mimetic.config import Settings

LEGEND = ("inj: faults injected that must raise this alert. raised: of those, raised in their "
          "session (on their channel). episodes: alerts stored. unexpl: episodes no injected "
          "fault of their session explains (rule: ingest/alert_truth.py).")


@dataclass(frozen=True)
class KindRow:
    """One alert type's line."""

    alert_type: str
    injected: int
    raised: int
    episodes: int
    unexplained: int


@dataclass(frozen=True)
class Episode:
    """A stored alert episode (the `alert` table)."""

    device_id: str
    session_id: str | None
    alert_type: str
    channel: int | None


def stored_episodes(s: Settings, devices: list[str]) -> list[Episode]:
    with psycopg.connect(s.db_dsn(), autocommit=True) as conn:
        rows = conn.execute("select device_id, session_id::text, alert_type, channel from alert "
                            "where device_id = any(%s)", (devices,)).fetchall()
    return [Episode(*r) for r in rows]


def kind_rows(episodes: list[Episode], truth: dict[str, Any], silent_after_s: float = 5.0) -> list[KindRow]:
    """Per alert type (those injected or raised), from stored episodes and the simulator's truth."""
    from ingest.alert_truth import causes, expected_alert, explanation

    faults_of: dict[str, list[dict]] = {}
    for p in truth["patients"]:
        for sess in p["sessions"]:
            faults_of[sess["session_id"]] = sess["faults"]
    in_session: dict[str, list[Episode]] = defaultdict(list)
    for e in episodes:
        in_session[e.session_id or ""].append(e)
    injected: dict[str, int] = defaultdict(int)
    raised: dict[str, int] = defaultdict(int)
    for sid, faults in faults_of.items():
        for f in faults:
            kind = expected_alert(f, silent_after_s)
            if kind is None:
                continue
            injected[kind] += 1
            if any(causes(f, e.alert_type, e.channel) for e in in_session.get(sid, [])):
                raised[kind] += 1
    count: dict[str, int] = defaultdict(int)
    unexplained: dict[str, int] = defaultdict(int)
    for e in episodes:
        count[e.alert_type] += 1
        if explanation(e.alert_type, e.channel, faults_of.get(e.session_id or "", [])) is None:
            unexplained[e.alert_type] += 1
    kinds = sorted(set(injected) | set(count))
    return [KindRow(k, injected[k], raised[k], count[k], unexplained[k]) for k in kinds]


def alerts_table(rows: list[KindRow]) -> Table:
    t = Table(title="alerts: raised against injected faults", box=box.SIMPLE_HEAD, show_edge=False,
              pad_edge=False, padding=(0, 1), collapse_padding=True, title_justify="left")
    for col, justify in (("alert", "left"), ("inj", "right"), ("raised", "right"), ("episodes", "right"),
                         ("unexpl", "right")):
        t.add_column(col, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for r in rows:
        t.add_row(r.alert_type, str(r.injected), str(r.raised), str(r.episodes), str(r.unexplained))
    return t


def summary_line(rows: list[KindRow]) -> str:
    """The line the demo's test reads: raised/injected faults and unexplained episodes."""
    inj, got = sum(r.injected for r in rows), sum(r.raised for r in rows)
    return (f"{got}/{inj} injected faults raised; {sum(r.unexplained for r in rows)} unexplained "
            f"of {sum(r.episodes for r in rows)} alerts")

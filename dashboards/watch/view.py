"""Draws a `LiveState` in at most 80 columns (plain text lines, usable over SSH).

Per muscle pair, one row: the left and right envelope now (µV, mean of the last
SMOOTH_S), the pipeline's current asymmetry index (its last 1 s window), signal
quality per electrode, and the last HISTORY_S of both envelopes as sparklines on
one scale per pair. Above: device, patient, session, current task and how far the
stream time is behind the wall clock; below: the open alerts.
"""

from __future__ import annotations

import time

from rich.console import Group
from rich.text import Text

from .state import HISTORY_S, SMOOTH_S, LiveState, QualityNow

WIDTH = 80
BARS = "▁▂▃▄▅▆▇█"
MAX_ALERT_LINES = 5
SPARK_MIN_TOP_UV = 20.0  # sparkline scale at least this, so rest noise (a few µV) stays low on the bars
SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


def clock(t_s: float) -> str:
    """HH:MM:SS.mmm UTC of a device time."""
    return time.strftime("%H:%M:%S", time.gmtime(t_s)) + f".{int(round(t_s * 1000)) % 1000:03d}"


def sparkline(values: list[float | None], top: float) -> str:
    if top <= 0:
        return "".join(" " if v is None else BARS[0] for v in values)
    return "".join(" " if v is None else BARS[min(len(BARS) - 1, int(v / top * (len(BARS) - 1) + 0.5))]
                   for v in values)


def _uv(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.1f}" if v < 10_000 else f"{v:.0f}"


def _quality(q: QualityNow | None) -> str:
    if q is None:
        return "-"
    if q.contact_ok is False:
        return "off"
    return "-" if q.score is None else f"{round(q.score * 100):d}%"


def _ai(v: float | None) -> str:
    return "-" if v is None else f"{v:+.2f}"


def lines(st: LiveState, now_s: float | None = None) -> list[str]:
    """The screen as text lines, each at most WIDTH characters."""
    now_s = time.time() if now_s is None else now_s
    who = f"mimetic watch  device {st.device_id}"
    if st.patient_code:
        who += f"  patient {st.patient_code}"
    if st.affected_side:
        who += f"  affected {st.affected_side}"
    out = [who]
    sess = "no session yet" if st.session_id is None else f"session {st.session_id[:8]}"
    if st.therapy:
        sess += f" {st.therapy}"
    if st.session_ended:
        sess += " (ended)"
    task = st.task_at(st.latest_s)
    if task is not None:
        sess += f"  task {task.task} #{task.repetition} since {clock(task.since_s)[:10]}"
    elif st.session_id is not None and not st.session_ended:
        sess += "  task: none (between tasks)"
    out.append(sess)
    if st.latest_s is None:
        out.append("stream: waiting for envelopes ...")
    else:
        behind = now_s - st.latest_s
        lag = f"  {behind:.1f} s behind" if -60 < behind < 3600 else "  (device clock differs)"
        out.append(f"stream time {clock(st.latest_s)} UTC{lag}")
    out += _pair_rows(st)
    out += _alert_lines(st)
    return [ln[:WIDTH] for ln in out]


def _pair_rows(st: LiveState) -> list[str]:
    pairs = st.pairs()
    mw = max([len("muscle")] + [len(m) for m, _l, _r in pairs])
    spark = max(8, min(20, (WIDTH - (mw + 6 + 6 + 6 + 4 + 4 + 7)) // 2))
    head = (f"{'muscle':<{mw}} {'L µV':>6} {'R µV':>6} {'AI':>6} {'qL':>4} {'qR':>4} "
            f"{f'L last {HISTORY_S:g} s':<{spark}} {f'R last {HISTORY_S:g} s':<{spark}}")
    rows = [head.rstrip()]
    for muscle, left, right in pairs:
        bl = st.buckets(left.channel, spark) if left else [None] * spark
        br = st.buckets(right.channel, spark) if right else [None] * spark
        top = max([SPARK_MIN_TOP_UV] + [v for v in bl + br if v is not None])
        bal = st.balance.get(muscle)
        rows.append(
            f"{muscle:<{mw}} {_uv(st.value_uv(left.channel) if left else None):>6} "
            f"{_uv(st.value_uv(right.channel) if right else None):>6} {_ai(bal.ai if bal else None):>6} "
            f"{_quality(st.quality.get(left.channel) if left else None):>4} "
            f"{_quality(st.quality.get(right.channel) if right else None):>4} "
            f"{sparkline(bl, top)} {sparkline(br, top)}".rstrip())
    if not pairs:
        rows.append("(no channel map yet: waiting for the session start)")
    rows.append(f"µV: envelope mean of the last {SMOOTH_S:g} s. AI: (L-R)/(L+R), last 1 s. q: quality")
    return rows


def _alert_lines(st: LiveState) -> list[str]:
    if not st.alerts:
        return ["open alerts: none"]
    site = {s.channel: f"{s.muscle} {s.side}" for s in st.sites}
    items = sorted(st.alerts.values(), key=lambda a: (SEVERITY_ORDER.get(a.severity, 9), a.raised_s))
    out = [f"open alerts: {len(items)}"]
    for a in items[:MAX_ALERT_LINES]:
        where = "" if a.channel is None else f" {site.get(a.channel, f'ch {a.channel}')}"
        line = f"  {a.severity:<8} {a.alert_type}{where} since {clock(a.raised_s)[:8]}"
        if a.message and len(line) + 2 + len(a.message) <= WIDTH:
            line += f"  {a.message}"
        out.append(line)
    if len(items) > MAX_ALERT_LINES:
        out.append(f"  and {len(items) - MAX_ALERT_LINES} more")
    return out


def render(st: LiveState, now_s: float | None = None) -> Group:
    return Group(*(Text(ln, no_wrap=True, overflow="crop") for ln in lines(st, now_s)))

"""Page 3: every session (therapy, current, device and signal faults), clinician grades,
patient-reported outcomes, the caveat and the definitions."""

from __future__ import annotations

import textwrap
from datetime import timedelta

from dashboards.report.layout import LEFT, PT_FRACTION, block, page, title
from dashboards.report.model import DEVICE_OPERATION, SIGNAL_QUALITY, STIMULATION_SAFETY, ReportData
from dashboards.report.text import (BAD, CAVEAT, GLOSSARY, HB_ROMAN, INK, MUTED, THERAPY_WORDS, WARN, minutes)

COLS = (("#", 0.0), ("date", 0.025), ("therapy", 0.09), ("minutes", 0.23), ("current µA", 0.31),
        ("discomfort", 0.405), ("skin", 0.49), ("device and signal alerts", 0.57))
ALERT_CHARS = 46


def page_three(d: ReportData, pages: int):
    fig = page(d, 3, pages)
    y = _session_table(fig, d, 0.918)
    y = _grades(fig, d, y - 0.02)
    y = _pros(fig, d, y - 0.01)
    y = title(fig, y - 0.015, "Caveat and definitions", 9.5)
    y = block(fig, LEFT, y, CAVEAT, 125, size=8, colour=INK)
    for g in GLOSSARY:
        y = block(fig, LEFT, y - 0.003, g, 140, size=7, colour=MUTED)
    return fig


def session_faults(d: ReportData, number: int) -> list[tuple[str, str]]:
    """(text, colour) of the device and signal alerts raised in one session."""
    out = []
    for kinds, colour in ((STIMULATION_SAFETY, BAD), (SIGNAL_QUALITY, WARN), (DEVICE_OPERATION, MUTED)):
        seen: dict[str, set[str]] = {}
        for a in d.alerts:
            if a.session_number == number and a.alert_type in kinds:
                seen.setdefault(a.alert_type, set()).add(a.muscle.replace("_", " ") if a.muscle else "")
        for k, ms in sorted(seen.items()):
            where = ", ".join(sorted(m for m in ms if m))
            out.append((k.replace("_", " ") + (f" ({where})" if where else ""), colour))
    return out


def _session_table(fig, d: ReportData, top: float) -> float:
    y = title(fig, top, "Sessions: therapy, stimulation current, patient reports, device and signal alerts")
    line = 8 * 1.45 * PT_FRACTION
    for name, dx in COLS:
        fig.text(LEFT + dx, y, name, fontsize=7.5, color=MUTED, va="top", fontweight="bold")
    y -= line
    for s in d.sessions:
        course = d.clinical.course_of(s.session_id)
        limit = course.current_limit_ua if course else None
        if s.therapy_type != "microcurrent":
            limit = None                      # the prescribed limit is for stimulation sessions
        if limit is None:                     # no course limit: the limit the device's over-current alert used
            limit = next((a.threshold for a in d.alerts if a.session_number == s.number
                          and a.alert_type in STIMULATION_SAFETY and a.threshold), None)
        current = ("–" if s.max_stim_current_ua is None else f"{s.max_stim_current_ua:.0f}"
                   + (f" / {limit:.0f}" if limit else ""))
        over = limit is not None and s.max_stim_current_ua is not None and s.max_stim_current_ua > limit
        planned = course.minutes_per_session if course else d.patient.planned_minutes
        cells = [str(s.number), f"{s.day:%d %b}", THERAPY_WORDS.get(s.therapy_type, s.therapy_type),
                 ("–" if s.minutes is None else minutes(s.minutes)) + (f" / {planned}" if planned else ""),
                 current, "not reported" if s.discomfort is None else f"{s.discomfort}/10",
                 "not reported" if s.skin_reaction is None else s.skin_reaction]
        for (name, dx), text in zip(COLS, cells):
            colour = BAD if (name == "current µA" and over) else (MUTED if text in ("–", "not reported") else INK)
            fig.text(LEFT + dx, y, text, fontsize=7.5, color=colour, va="top")
        faults = session_faults(d, s.number)
        y = _faults_cell(fig, LEFT + COLS[-1][1], y, faults, line)
    note = ("Current: highest stimulation current measured in the session / the course's prescribed limit "
            "(or, without one, the limit of the device's over-current alert; red: above it). Minutes: measured / "
            "planned. Alerts: red = over-current (stimulation safety), orange = electrode or signal fault (that "
            "muscle's samples are left out of the figures), grey = device operation (battery, data gaps).")
    return block(fig, LEFT, y - 0.004, note, 140, size=7, colour=MUTED)


def _faults_cell(fig, x: float, y: float, faults: list[tuple[str, str]], line: float) -> float:
    """The alerts of one session, one line per kind of alert (its colour), wrapped in the column;
    returns the next row's y."""
    if not faults:
        fig.text(x, y, "none", fontsize=7.5, color=MUTED, va="top")
        return y - line
    by_colour: dict[str, list[str]] = {}
    for text, colour in faults:
        by_colour.setdefault(colour, []).append(text)
    for colour, texts in by_colour.items():
        for part in textwrap.wrap(", ".join(texts), ALERT_CHARS):
            fig.text(x, y, part, fontsize=7.5, color=colour, va="top")
            y -= line
    return y


def _grades(fig, d: ReportData, top: float) -> float:
    y = title(fig, top, "Clinician grades over time")
    g = d.clinical.grades
    if not g:
        return block(fig, LEFT, y, "No House-Brackmann or Sunnybrook assessment recorded.", 100, colour=MUTED)
    h = 0.16
    ax = fig.add_axes([0.1, y - h - 0.01, 0.78, h])
    sb = [x for x in g if x.sunnybrook is not None]
    hb = [x for x in g if x.hb_grade is not None]
    handles = []
    if sb:
        (l1,) = ax.plot([x.assessed_on for x in sb], [x.sunnybrook for x in sb], "-o", color="#1f77b4", ms=4)
        handles.append((l1, "Sunnybrook composite (0-100, left axis; higher is better)"))
    ax.set_ylim(0, 105)
    ax.set_ylabel("Sunnybrook")
    ax2 = ax.twinx()
    if hb:
        (l2,) = ax2.plot([x.assessed_on for x in hb], [x.hb_grade for x in hb], "-s", color="#9467bd", ms=4)
        handles.append((l2, "House-Brackmann grade (right axis; I = normal, VI = total paralysis)"))
    ax2.set_ylim(6.5, 0.5)
    ax2.set_yticks(range(1, 7))
    ax2.set_yticklabels([HB_ROMAN[k] for k in range(1, 7)])
    ax2.set_ylabel("House-Brackmann")
    ax2.spines["right"].set_visible(True)
    import matplotlib.dates as mdates

    days = sorted({x.assessed_on for x in g})
    ax.set_xticks(days[:: max(1, len(days) // 8)])
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%d %b %y"))
    ax.set_xlim(days[0] - timedelta(days=2), days[-1] + timedelta(days=2))
    ax.tick_params(axis="x", labelsize=7)
    ax.grid(axis="y", color="#e6eaee", lw=0.8)
    ax.legend([hh for hh, _ in handles], [t for _, t in handles], loc="upper left", bbox_to_anchor=(0, -0.15),
              frameon=False, ncol=1, fontsize=7)
    listed = "; ".join(f"{x.assessed_on:%d %b %Y} " + ", ".join(
        b for b in (f"House-Brackmann {HB_ROMAN[x.hb_grade]}" if x.hb_grade else "",
                    f"Sunnybrook {x.sunnybrook}" if x.sunnybrook is not None else "") if b)
        + f" ({x.assessor})" for x in g[-8:])
    more = f"{len(g) - 8} earlier assessments, then: " if len(g) > 8 else ""
    return block(fig, LEFT, y - h - 0.065, more + listed + ".", 140, size=7.5, colour=INK)


def _pros(fig, d: ReportData, top: float) -> float:
    y = title(fig, top, "Patient-reported outcomes")
    by = d.clinical.pros_by_instrument()
    if not by:
        return block(fig, LEFT, y, "None recorded (FaCE, SAQ and the global rating of change can be entered by "
                     "the clinic or sent from the patient's app).", 120, colour=MUTED)
    for inst, xs in by.items():
        p = xs[0]
        direction = "higher is better" if p.higher_is_better else "lower is better"
        series = " → ".join(f"{x.score:g} ({x.answered_at:%d %b}, {x.source})" for x in xs[-6:])
        more = f"{len(xs) - 6} earlier, then " if len(xs) > 6 else ""
        y = block(fig, LEFT, y, f"{p.name} ({p.score_min:g} to {p.score_max:g}, {direction}): {more}{series}",
                  130, size=8, colour=INK)
    return y

"""Page 2: first against latest per muscle, the synkinesis grid, adherence and patient comfort."""

from __future__ import annotations

import math

import numpy as np

from dashboards.report.layout import block
from dashboards.report.model import ReportData
from dashboards.report.text import (BAD, CHANGE_PP, GOOD, INK, MUTED, WARN, minutes, muscle_label, task_word)

SYN_ROWS = 8


def page_two(d: ReportData, pages: int):
    from dashboards.report.layout import page

    fig = page(d, 2, pages)
    y = _first_latest(fig, d, top=0.915)
    y = _synkinesis(fig, d, top=y - 0.015)
    _adherence(fig, d, top=y - 0.03, bottom=0.29)
    _comfort(fig, d, top=0.245, bottom=0.07)
    return fig


def _first_latest(fig, d: ReportData, top: float) -> float:
    c = d.comparison
    rows = list(c.muscles)
    single = [m for m in d.muscles if m not in {x.muscle for x in rows}]
    h = 0.028 * max(len(rows), 1) + 0.02
    ax = fig.add_axes([0.34, top - h - 0.02, 0.58, h])
    ax.set_title("First valid session against the latest", x=-0.48)
    for i, mc in enumerate(rows):
        f, last = mc.first.pct, mc.latest.pct
        col = GOOD if last - f >= CHANGE_PP else (BAD if last - f <= -CHANGE_PP else MUTED)
        ax.plot([f, last], [i, i], color="#c9d1d9", lw=5, solid_capstyle="round", zorder=1)
        ax.scatter([f], [i], s=55, color="white", edgecolor=MUTED, lw=1.4, zorder=2)
        ax.scatter([last], [i], s=60, color=col, zorder=3)
        ax.text(max(f, last) + 3, i, f"{f:.0f}% (session {mc.first.session_number}) → {last:.0f}% "
                f"(session {mc.latest.session_number})", va="center", fontsize=7.5, color=col)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([muscle_label(m.muscle) for m in rows], fontsize=8, color=INK)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.axvline(100, color=GOOD, lw=0.8, ls=":")
    ax.set_xlim(0, max([160] + [m.latest.pct + 60 for m in rows] + [m.first.pct + 60 for m in rows]))
    ax.set_xlabel("affected side, % of healthy side", fontsize=7.5)
    ax.grid(axis="x", color="#e6eaee", lw=0.8)
    y = top - h - 0.065
    note = ("○ first valid session, ● latest; ● green: improved by 5 points or more, red: worse by 5 or more, "
            "grey: within 5 points.")
    if single:
        note += " Only one valid session so far: " + ", ".join(muscle_label(m) for m in single) + "."
    gaps = [f"{muscle_label(m)}: " + "; ".join(f"session {n}: {why}" for n, why in sorted(g.items()))
            for m, g in d.unusable.items() if g]
    if gaps:
        note += " No valid value: " + " | ".join(gaps) + "."
    return block(fig, 0.06, y, note, 135, size=7, colour=MUTED)


def _synkinesis(fig, d: ReportData, top: float) -> float:
    n = max(len(d.sessions), 1)
    pairs = d.synkinesis[:SYN_ROWS]
    fig.text(0.06, top, "Synkinesis: involuntary co-activation of a muscle during another task", fontsize=10.5,
             fontweight="bold", color=INK, va="top")
    if not pairs:
        why = (f"None: in the {d.syn_checked} task-muscle pairs analysed, the other muscles stayed at their "
               "resting level on both sides (no co-activation)." if d.syn_checked
               else "Not measured: needs the affected side and task recordings.")
        return block(fig, 0.06, top - 0.022, why, 120, colour=MUTED)
    h = max(0.024 * len(pairs) + 0.01, 0.08)
    ax = fig.add_axes([0.34, top - 0.03 - h, 0.5, h])
    grid = np.full((len(pairs), n), np.nan)
    for i, p in enumerate(pairs):
        for s, v in p.index.items():
            grid[i, s - 1] = v
    from matplotlib.colors import LinearSegmentedColormap

    # white at 0, light orange from the flag threshold up to red at +1, blue towards -1
    flag_pos = (d.syn_threshold + 1) / 2
    cmap = LinearSegmentedColormap.from_list("syn", [
        (0.0, "#2b6cb0"), (0.5, "#f7f7f7"), (flag_pos, "#f6d7a7"), (min(0.85, flag_pos + 0.2), "#e08a00"),
        (1.0, "#c0392b")]).with_extremes(bad="#ffffff")
    im = ax.imshow(np.ma.masked_invalid(grid), aspect="auto", cmap=cmap, vmin=-1, vmax=1)
    for i, p in enumerate(pairs):
        for j in range(n):
            v = grid[i, j]
            if math.isnan(v):
                rest = (j + 1) in p.at_rest
                ax.text(j, i, "rest" if rest else "–", ha="center", va="center", fontsize=6.5, color=MUTED)
                continue
            flagged = p.flagged.get(j + 1, False)
            ax.text(j, i, f"{v:+.2f}" + (" ⚑" if flagged else ""), ha="center", va="center", fontsize=6.8,
                    color="white" if abs(v) > 0.6 else INK, fontweight="bold" if flagged else "normal")
    ax.set_yticks(range(len(pairs)))
    ax.set_yticklabels([f"{task_word(p.target_task).capitalize()} → {p.muscle.replace('_', ' ')}" for p in pairs],
                       fontsize=7.8, color=INK)
    ax.set_xticks(range(n))
    ax.set_xticklabels([str(j + 1) for j in range(n)], fontsize=7.5)
    ax.tick_params(length=0)
    for s in ax.spines.values():
        s.set_visible(False)
    fig.text(0.34 - 0.01, top - 0.022, "task performed → co-activated muscle", fontsize=7, color=MUTED, ha="right",
             va="top")
    cax = fig.add_axes([0.85, top - 0.03 - h, 0.011, h])
    cb = fig.colorbar(im, cax=cax, ticks=[-1, 0, d.syn_threshold, 1])
    cb.ax.tick_params(labelsize=6.5)
    cb.ax.text(5.2, 1.0, "affected\nside more", transform=cb.ax.transAxes, fontsize=6, color=BAD, va="top")
    cb.ax.text(5.2, 0.0, "healthy\nside more", transform=cb.ax.transAxes, fontsize=6, color="#2b6cb0",
               va="bottom")
    cb.ax.axhline(d.syn_threshold, color=INK, lw=0.8)
    more = len(d.synkinesis) - len(pairs)
    note = (f"Columns: session number. Value: synkinesis index, (affected - healthy) / (affected + healthy) of the "
            f"co-activated muscle's activity while the patient performs the task; 0 = equal on both sides, "
            f"+ = more on the affected side (the synkinesis pattern, red), - = more on the healthy side (blue). "
            f"⚑ bold = flagged (above {d.syn_threshold:.2f}); rest = neither side above its resting level (no "
            f"co-activation); – = not measured that session. "
            + (f"Rows: the {len(pairs)} pairs with the highest values ({more} more pairs below them)." if more > 0
               else "Rows: every pair with a value in some session."))
    return block(fig, 0.06, top - 0.04 - h, note, 135, size=7, colour=MUTED)


def _adherence(fig, d: ReportData, top: float, bottom: float) -> None:
    ax = fig.add_axes([0.1, bottom, 0.84, top - bottom - 0.02])
    course = d.clinical.courses[-1] if d.clinical.courses else None
    planned = course.minutes_per_session if course else d.patient.planned_minutes
    ax.set_title("Minutes per session against the plan"
                 + (f" ({course.minutes_per_session} min, {course.therapy_type.replace('_', ' ')} course)"
                    if course else ""))
    x = np.arange(1, len(d.sessions) + 1)
    mins = [s.minutes or 0.0 for s in d.sessions]
    cols = [(GOOD if planned and m >= 0.9 * planned else WARN) if planned else "#1f77b4" for m in mins]
    ax.bar(x, mins, color=cols, width=0.6)
    if planned:
        ax.axhline(planned, color=INK, lw=1, ls="--")
        ax.text(len(mins) + 0.45, planned, f"plan {minutes(planned)}", va="bottom", ha="right", fontsize=7.5,
                color=INK)
    ax.set_xticks(x)
    ax.set_xticklabels([f"{s.number}\n{s.day:%d %b}" for s in d.sessions], fontsize=7)
    for i in range(1, len(d.sessions)):
        gap = (d.sessions[i].started_at - d.sessions[i - 1].started_at).total_seconds() / 86400
        if gap > 3.5:
            ax.annotate(f"{gap:.0f}-day break", xy=(i + 0.5, 0), xytext=(i + 0.5, max(mins) * 0.5), ha="center",
                        fontsize=7, color=BAD, arrowprops={"arrowstyle": "-", "color": BAD, "lw": 0.6})
    ax.set_ylabel("minutes")
    ax.set_ylim(0, max(mins + [planned or 0]) * 1.3 + 0.1)
    ax.grid(axis="y", color="#e6eaee", lw=0.8)
    if planned:
        fig.text(0.94, top - 0.005, "green: ≥ 90% of the planned minutes · orange: shorter", fontsize=7,
                 color=MUTED, ha="right", va="bottom")


def _comfort(fig, d: ReportData, top: float, bottom: float) -> None:
    ax = fig.add_axes([0.1, bottom, 0.84, top - bottom - 0.02])
    ax.set_title("Patient comfort: discomfort (0-10) and skin reactions reported by the patient")
    fig.text(0.94, top - 0.005, "green 0-3 · orange 4-6 · red 7-10 · hatched: not reported", fontsize=7,
             color=MUTED, ha="right", va="bottom")
    x = np.arange(1, len(d.sessions) + 1)
    for xi, s in zip(x, d.sessions):
        v = s.discomfort
        if v is None:
            ax.bar([xi], [10], color="none", edgecolor="#b8c1cc", hatch="///", width=0.6, lw=0.6)
            ax.text(xi, 5, "not\nreported", ha="center", va="center", fontsize=6.5, color=MUTED,
                    bbox={"fc": "white", "ec": "none", "pad": 0.5})
        else:
            ax.bar([xi], [max(v, 0.08)], color=BAD if v >= 7 else (WARN if v >= 4 else GOOD), width=0.6)
            ax.text(xi, v + 0.2, str(v), ha="center", va="bottom", fontsize=7, color=INK)
        if s.skin_reaction not in (None, "none"):
            ax.text(xi, (10 if v is None else v) + 1.3, f"skin: {s.skin_reaction}", ha="center", va="bottom",
                    fontsize=6.8, color=BAD, fontweight="bold")
    ax.set_ylim(0, 12)
    ax.set_yticks([0, 2, 4, 6, 8, 10])
    ax.set_ylabel("discomfort")
    ax.set_xticks(x)
    ax.set_xticklabels([str(i) for i in x], fontsize=7.5)
    ax.set_xlabel("session number")
    ax.grid(axis="y", color="#e6eaee", lw=0.8)

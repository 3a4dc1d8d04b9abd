"""Page 1: the summary in sentences and symmetry per muscle across sessions."""

from __future__ import annotations

import numpy as np

from dashboards.report.layout import LEFT, block, page, title
from dashboards.report.model import ReportData
from dashboards.report.symmetry import trend_per_session
from dashboards.report.text import BULLETS, GOOD, MUTED, muscle_label, summary

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f"]
BAND = (90, 110)


def page_one(d: ReportData, pages: int):
    fig = page(d, 1, pages)
    y = title(fig, 0.918, "In short")
    # what the bullet colours mean
    x = 0.22
    for colour, meaning in BULLETS:
        fig.text(x, 0.918, "●", color=colour, fontsize=9, va="top")
        fig.text(x + 0.018, 0.916, meaning, color=MUTED, fontsize=7.5, va="top")
        x += 0.035 + 0.0072 * len(meaning)
    for line in summary(d):
        fig.text(LEFT + 0.012, y, "●", color=line.colour, fontsize=9, va="top")
        y = block(fig, LEFT + 0.032, y, line.text, 112, size=8.5) - 0.003
    if not d.muscles:
        block(fig, LEFT, y - 0.02, "Charts appear once the first session with task measurements is analysed.",
              100, size=9, colour=MUTED)
        return fig
    _symmetry_chart(fig, d, top=y - 0.03)
    return fig


def _symmetry_chart(fig, d: ReportData, top: float) -> None:
    n_leg = len(d.muscles) + 2
    legend_h = 0.014 * ((n_leg + 1) // 2) + 0.02
    bottom = 0.075 + legend_h
    ax = fig.add_axes([0.1, bottom, 0.84, max(top - bottom - 0.03, 0.12)])
    ax.set_title("Symmetry per muscle across sessions: affected side in % of the healthy side")
    band = ax.axhspan(*BAND, color=GOOD, alpha=0.10, lw=0)
    sym = ax.axhline(100, color=GOOD, lw=0.8, ls=":")
    n = max(len(d.sessions), 1)
    handles = [band, sym]
    labels = [f"{BAND[0]}-{BAND[1]}%: within 10% of the healthy side (display aid, not a norm)",
              "100% = both sides equal"]
    for i, (m, pts) in enumerate(d.muscles.items()):
        c = COLORS[i % len(COLORS)]
        x = [p.session_number for p in pts]
        yv = [p.pct for p in pts]
        (h,) = ax.plot(x, yv, "-o", color=c, lw=1.8, ms=4.5)
        slope = trend_per_session(pts)
        if slope is not None:
            b = np.polyfit(x, yv, 1)
            xx = np.array([x[0], x[-1]], float)
            ax.plot(xx, np.polyval(b, xx), color=c, lw=1, ls="--", alpha=0.6)
        missing = sorted(d.unusable.get(m, {}))
        if missing:
            ax.scatter(missing, [3 + 2.5 * i] * len(missing), marker="x", color=c, s=22, lw=1.2)
        trend = ("trend n/a (< 3 valid sessions)" if slope is None
                 else f"trend {slope:+.1f} points per session")
        handles.append(h)
        labels.append(f"{muscle_label(m)}: {trend}")
    ax.set_xlabel("session number")
    ax.set_ylabel("affected side, % of healthy side")
    ax.set_xlim(0.5, n + 0.5)
    ax.set_xticks(range(1, n + 1))
    ymax = max([115] + [p.pct for pts in d.muscles.values() for p in pts]) + 10
    ax.set_ylim(0, ymax)
    ax.grid(axis="y", color="#e6eaee", lw=0.8)
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(-0.06, -0.09), ncol=2, frameon=False,
              fontsize=7.3, handlelength=1.8, columnspacing=1.2)
    note = ("Dashed: least-squares trend (percentage points of the healthy side per session, shown from 3 valid "
            "sessions). × near the axis: no valid value for that muscle in that session (why: page 2).")
    if d.patient.affected_side is None:
        note += " The affected side is not recorded: the weaker side in % of the stronger one is shown instead."
    block(fig, 0.06, 0.045, note, 140, size=7, colour=MUTED)

"""Page furniture shared by the report's pages: style, A4 figure, header, wrapped text."""

from __future__ import annotations

import textwrap

from dashboards.report.model import ReportData
from dashboards.report.text import INK, MUTED

A4_IN = (8.27, 11.69)
LEFT, RIGHT = 0.06, 0.94
PT_FRACTION = 1 / (A4_IN[1] * 72)   # one point in figure-height fraction


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 8.5, "axes.spines.top": False, "axes.spines.right": False,
                         "axes.edgecolor": "#9aa5b1", "axes.labelcolor": INK, "xtick.color": MUTED,
                         "ytick.color": MUTED, "axes.titleweight": "bold", "axes.titlesize": 10.5,
                         "axes.titlelocation": "left", "axes.titlecolor": INK, "font.family": "DejaVu Sans",
                         "legend.fontsize": 7.5})
    return plt


def page(d: ReportData, number: int, pages: int):
    """A blank A4 portrait page with the report's header."""
    plt = pyplot()
    fig = plt.figure(figsize=A4_IN, dpi=110)
    p = d.patient
    fig.text(LEFT, 0.962, f"Progress report · {d.code}", fontsize=17, fontweight="bold", color=INK)
    bits = [p.etiology.replace("_", " ") if p.etiology else None,
            {"L": "left side affected", "R": "right side affected"}.get(p.affected_side or "",
                                                                       "affected side not recorded"),
            f"onset {p.onset_date:%d %b %Y}" if p.onset_date else None]
    if d.sessions:
        bits.append(f"sessions {d.sessions[0].day:%d %b %Y} – {d.sessions[-1].day:%d %b %Y}")
    fig.text(LEFT, 0.945, " · ".join(b for b in bits if b), fontsize=9, color=MUTED)
    fig.text(RIGHT, 0.975, f"page {number} of {pages}", fontsize=8, color=MUTED, ha="right")
    fig.text(RIGHT, 0.962, f"generated {d.generated_at:%d %b %Y %H:%M} UTC", fontsize=8, color=MUTED, ha="right")
    from matplotlib.lines import Line2D

    fig.add_artist(Line2D([LEFT, RIGHT], [0.935, 0.935], color="#d5dbe1", lw=1))
    return fig


def block(fig, x: float, y: float, text: str, width_chars: int, size: float = 8.5, colour: str = INK,
          **kw) -> float:
    """Wrapped text with its top at y; returns the y just below it."""
    lines = []
    for para in text.split("\n"):
        lines += textwrap.wrap(para, width_chars) or [""]
    fig.text(x, y, "\n".join(lines), fontsize=size, color=colour, va="top", linespacing=1.3, **kw)
    return y - len(lines) * size * 1.3 * PT_FRACTION - 0.004


def title(fig, y: float, text: str, size: float = 10.5) -> float:
    fig.text(LEFT, y, text, fontsize=size, fontweight="bold", color=INK, va="top")
    return y - size * 1.5 * PT_FRACTION

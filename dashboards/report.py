"""`mimetic report --patient CODE --out FILE.png|.pdf|.html`: a clinician's progress report.

Two pages in plain language: what changed (a short summary in sentences), symmetry
per muscle across sessions with its trend, first against latest session, synkinesis,
adherence to the plan, comfort and safety events. Reads the clinic views
(patient_progress, patient_adherence, patient_responder, session_overview, alert)
through any connection allowed to read them: a clinic login (row-level security keeps
it to its own patients) or the owner.

Symmetry is shown as the affected side's activation in % of the healthy side
(100 % = symmetric; from the affected/healthy ratio, or (1 − |AI|)/(1 + |AI|) when the
affected side is not recorded), which reads more naturally than the asymmetry index.
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from mimetic.domain import MUSCLES

SYN_FLAG = 0.25
TASK_WORDS = {"brow_raise": "Brow raise", "frown": "Frown", "eye_closure_tight": "Eye closure", "smile": "Smile",
              "snarl": "Snarl", "pucker": "Pucker", "lip_depression": "Lip depression"}
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f"]
INK, MUTED, GOOD, WARN, BAD = "#1d2733", "#6b7785", "#2e8b57", "#e08a00", "#c0392b"


def muscle_label(m: str) -> str:
    task = MUSCLES.get(m)
    return f"{TASK_WORDS.get(task, m)} ({m.replace('_', ' ')})" if task else m.replace("_", " ")


@dataclass
class ReportData:
    code: str
    patient: dict[str, Any]
    sessions: list[dict[str, Any]]                 # finished sessions, in order, with session_number
    muscles: dict[str, list[dict[str, Any]]]      # muscle -> per-session rows (session_number order)
    adherence: dict[str, Any]
    responder: dict[str, Any] | None
    alerts: list[dict[str, Any]]                  # alert episodes during the patient's sessions
    generated_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


def _rows(conn: psycopg.Connection, sql: str, params: tuple) -> list[dict[str, Any]]:
    cur = conn.execute(sql, params)
    names = [c.name for c in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def load(conn: psycopg.Connection, code: str) -> ReportData:
    pat = _rows(conn, "select code, etiology, affected_side, onset_date, baseline_hb_grade, baseline_sunnybrook, "
                      "planned_sessions, planned_minutes from patient where code = %s", (code,))
    if not pat:
        raise LookupError(f"no patient {code!r} visible to this login")
    prog = _rows(conn, "select session_number, session_id, session_date, started_at, therapy_type, minutes, "
                       "discomfort, skin_reaction, max_stim_current_ua, alerts, muscle, ai, ratio, synkinesis, "
                       "synkinesis_flag from patient_progress where patient_code = %s "
                       "order by session_number, muscle", (code,))
    sessions: dict[int, dict[str, Any]] = {}
    muscles: dict[str, list[dict[str, Any]]] = {}
    for r in prog:
        sessions.setdefault(r["session_number"], {k: r[k] for k in (
            "session_number", "session_id", "session_date", "started_at", "therapy_type", "minutes", "discomfort",
            "skin_reaction", "max_stim_current_ua", "alerts")})
        if r["muscle"] is not None and r["ai"] is not None:
            ai = float(r["ai"])
            pct = float(r["ratio"]) * 100 if r["ratio"] is not None else (1 - abs(ai)) / (1 + abs(ai)) * 100
            muscles.setdefault(r["muscle"], []).append({
                "session_number": r["session_number"], "ai": ai, "pct": pct,
                "synkinesis": None if r["synkinesis"] is None else float(r["synkinesis"]),
                "flag": bool(r["synkinesis_flag"])})
    adh = _rows(conn, "select * from patient_adherence where patient_code = %s", (code,))
    resp = _rows(conn, "select * from patient_responder where patient_code = %s", (code,))
    alerts = _rows(conn, "select a.alert_type, a.severity, a.raised_at, a.cleared_at, a.value, a.threshold, "
                         "a.message, so.session_id from alert a join session_overview so on so.session_id = a.session_id "
                         "join patient p on p.patient_id = so.patient_id where p.code = %s order by a.raised_at",
                   (code,))
    return ReportData(code, pat[0], [sessions[k] for k in sorted(sessions)], dict(sorted(muscles.items())),
                      adh[0] if adh else {}, resp[0] if resp else None, alerts)


# --- plain-language summary -------------------------------------------------------------------

def _trend(points: list[dict[str, Any]]) -> float | None:
    """Least-squares slope of % of healthy side per session (None below 3 sessions)."""
    if len(points) < 3:
        return None
    x = np.array([p["session_number"] for p in points], float)
    y = np.array([p["pct"] for p in points], float)
    return float(np.polyfit(x, y, 1)[0])


def summary(d: ReportData) -> list[tuple[str, str]]:
    """(colour, sentence) lines for the top of the report."""
    out: list[tuple[str, str]] = []
    n = len(d.sessions)
    if not n:
        return [(MUTED, "No finished session yet: nothing to report.")]
    firsts = [pts[0]["pct"] for pts in d.muscles.values() if pts]
    lasts = [pts[-1]["pct"] for pts in d.muscles.values() if pts]
    if firsts and n >= 2:
        f, l = float(np.mean(firsts)), float(np.mean(lasts))
        change = l - f
        word = "improved" if change >= 5 else ("got worse" if change <= -5 else "is about the same")
        colour = GOOD if change >= 5 else (BAD if change <= -5 else MUTED)
        out.append((colour, f"Symmetry {word}: the affected side works at {l:.0f}% of the healthy side on "
                            f"average, against {f:.0f}% in the first session ({change:+.0f} points over {n} sessions)."))
        best = max(d.muscles.items(), key=lambda kv: kv[1][-1]["pct"] - kv[1][0]["pct"])
        worst = min(d.muscles.items(), key=lambda kv: kv[1][-1]["pct"])
        out.append((INK, f"Most progress: {muscle_label(best[0])}, {best[1][0]['pct']:.0f}% → "
                          f"{best[1][-1]['pct']:.0f}%. Weakest now: {muscle_label(worst[0])} at "
                          f"{worst[1][-1]['pct']:.0f}%."))
    elif firsts:
        out.append((INK, f"One session so far: the affected side works at {float(np.mean(lasts)):.0f}% of the "
                         f"healthy side on average."))
    if d.responder and d.responder.get("responder") is not None:
        imp = float(d.responder["abs_ai_improvement"] or 0)
        out.append((GOOD if d.responder["responder"] else WARN,
                    ("Responder" if d.responder["responder"] else "Not (yet) a responder")
                    + f": mean asymmetry index fell by {imp:.2f} (threshold 0.10)."))
    flagged = {m: sum(p["flag"] for p in pts) for m, pts in d.muscles.items()}
    flagged = {m: k for m, k in flagged.items() if k}
    if flagged:
        latest = [m for m, pts in d.muscles.items() if pts and pts[-1]["flag"]]
        out.append((BAD if latest else WARN, "Synkinesis (involuntary co-activation) flagged for "
                    + ", ".join(f"{muscle_label(m)} in {k} of {n}" for m, k in flagged.items())
                    + (" sessions; still present in the latest session." if latest else
                       " sessions; not in the latest session.")))
    else:
        out.append((GOOD, "No synkinesis flagged."))
    a = d.adherence
    planned = a.get("planned_sessions")
    plan_txt = f"{a.get('sessions_done', n)} of {planned} planned sessions" if planned else f"{n} sessions"
    mins = a.get("mean_minutes")
    gap = a.get("mean_days_between")
    out.append((GOOD if planned and n >= 0.8 * planned else INK,
                f"Adherence: {plan_txt}"
                + (f", {float(mins):.0f} min on average" if mins is not None else "")
                + (f" (plan {a['planned_minutes']} min)" if a.get("planned_minutes") else "")
                + (f", one every {float(gap):.1f} days" if gap is not None else "")
                + (f"; longest break {float(a['max_days_between']):.0f} days." if a.get("max_days_between") else ".")))
    disc = [s["discomfort"] for s in d.sessions if s["discomfort"] is not None]
    skin = [s for s in d.sessions if s["skin_reaction"] not in (None, "none")]
    oc = [x for x in d.alerts if x["alert_type"] == "over_current"]
    parts = []
    if disc:
        parts.append(f"discomfort {np.mean(disc):.1f}/10 on average (highest {max(disc)})")
    parts.append(f"skin reaction after {len(skin)} session{'s' if len(skin) != 1 else ''}" if skin
                 else "no skin reaction")
    parts.append(f"{len(oc)} over-current alert{'s' if len(oc) != 1 else ''}" if oc else "no over-current")
    serious = bool(oc) or (disc and max(disc) >= 7) or len(skin) >= 2
    out.append((BAD if serious else (WARN if skin else GOOD), "Comfort and safety: " + ", ".join(parts) + "."))
    return out


# --- figures -----------------------------------------------------------------------------------

def _style():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.spines.top": False, "axes.spines.right": False,
                         "axes.edgecolor": "#9aa5b1", "axes.labelcolor": INK, "xtick.color": MUTED,
                         "ytick.color": MUTED, "axes.titleweight": "bold", "axes.titlesize": 11,
                         "axes.titlelocation": "left", "axes.titlecolor": INK, "font.family": "DejaVu Sans"})
    return plt


def _header(fig, d: ReportData, page: int, pages: int = 2) -> None:
    p = d.patient
    fig.text(0.06, 0.965, f"Progress report · {d.code}", fontsize=17, fontweight="bold", color=INK)
    bits = [p.get("etiology", "").replace("_", " ") if p.get("etiology") else None,
            {"L": "left side affected", "R": "right side affected"}.get(p.get("affected_side") or ""),
            f"baseline House-Brackmann {p['baseline_hb_grade']}" if p.get("baseline_hb_grade") else None]
    if d.sessions:
        first, last = d.sessions[0]["session_date"], d.sessions[-1]["session_date"]
        bits.append(f"sessions {first:%d %b %Y} – {last:%d %b %Y}")
    fig.text(0.06, 0.945, " · ".join(b for b in bits if b), fontsize=9.5, color=MUTED)
    fig.text(0.94, 0.965, f"page {page} of {pages}", fontsize=8, color=MUTED, ha="right")
    fig.text(0.94, 0.945, f"generated {d.generated_at:%d %b %Y %H:%M} UTC", fontsize=8, color=MUTED, ha="right")
    from matplotlib.lines import Line2D

    fig.add_artist(Line2D([0.06, 0.94], [0.935, 0.935], color="#d5dbe1", lw=1))


def page_one(d: ReportData):
    plt = _style()
    fig = plt.figure(figsize=(8.27, 11.69), dpi=110)  # A4 portrait
    _header(fig, d, 1, 2 if d.sessions else 1)
    # summary box
    lines = summary(d)
    y = 0.915
    fig.text(0.06, y, "In short", fontsize=12, fontweight="bold", color=INK)
    y -= 0.025
    import textwrap
    for colour, text in lines:
        wrapped = textwrap.wrap(text, 100)
        fig.text(0.075, y, "●", color=colour, fontsize=10, va="top")
        fig.text(0.095, y, "\n".join(wrapped), color=INK, fontsize=9.5, va="top", linespacing=1.35)
        y -= 0.019 * len(wrapped) + 0.008
    top = min(y - 0.02, 0.72)
    if not d.muscles:
        fig.text(0.075, top, "Charts appear once the first session with task measurements is analysed.",
                 fontsize=9.5, color=MUTED, va="top")
        return fig
    # 1) symmetry across sessions
    ax = fig.add_axes([0.09, top - 0.33, 0.6, 0.30])
    ax.set_title("Symmetry per muscle across sessions")
    ax.axhspan(90, 110, color=GOOD, alpha=0.08, lw=0)
    ax.axhline(100, color=GOOD, lw=0.8, ls=":")
    ax.text(0.6, 101.5, "symmetric", color=GOOD, fontsize=7.5)
    n = max((len(d.sessions), 1))
    for i, (m, pts) in enumerate(d.muscles.items()):
        x = [p["session_number"] for p in pts]
        yv = [p["pct"] for p in pts]
        c = COLORS[i % len(COLORS)]
        ax.plot(x, yv, "-o", color=c, lw=2, ms=5, label=muscle_label(m))
        slope = _trend(pts)
        if slope is not None:
            xx = np.array([x[0], x[-1]], float)
            b = np.polyfit(x, yv, 1)
            ax.plot(xx, np.polyval(b, xx), color=c, lw=1, ls="--", alpha=0.6)
    ax.set_xlabel("session number")
    ax.set_ylabel("affected side, % of healthy side")
    ax.set_xlim(0.5, n + 0.5)
    ax.set_xticks(range(1, n + 1))
    ymax = max([110] + [p["pct"] for pts in d.muscles.values() for p in pts]) + 10
    ax.set_ylim(0, ymax)
    ax.grid(axis="y", color="#e6eaee", lw=0.8)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, fontsize=8,
              title="dashed: trend", title_fontsize=7.5)
    # trend table beside
    tx = 0.72
    ty = top - 0.20
    fig.text(tx, ty, "Trend per session", fontsize=9, fontweight="bold", color=INK)
    for i, (m, pts) in enumerate(d.muscles.items()):
        s = _trend(pts)
        txt = "n/a (< 3 sessions)" if s is None else f"{s:+.1f} points"
        col = MUTED if s is None else (GOOD if s > 1 else (BAD if s < -1 else MUTED))
        fig.text(tx, ty - 0.02 * (i + 1), f"{TASK_WORDS.get(MUSCLES.get(m, ''), m)}: {txt}", fontsize=8.5,
                 color=col)
    # 2) first vs latest
    ax2 = fig.add_axes([0.30, 0.06, 0.62, top - 0.45])
    ax2.set_title("First session against the latest", x=-0.35)
    names = list(d.muscles)
    for i, m in enumerate(names):
        pts = d.muscles[m]
        f, l = pts[0]["pct"], pts[-1]["pct"]
        c = GOOD if l - f >= 5 else (BAD if l - f <= -5 else MUTED)
        ax2.plot([f, l], [i, i], color="#c9d1d9", lw=6, solid_capstyle="round", zorder=1)
        ax2.scatter([f], [i], s=70, color="white", edgecolor=MUTED, lw=1.5, zorder=2)
        ax2.scatter([l], [i], s=80, color=c, zorder=3)
        ax2.text(max(f, l) + 3, i, f"{f:.0f}% → {l:.0f}%", va="center", fontsize=8.5, color=c)
    ax2.set_yticks(range(len(names)))
    ax2.set_yticklabels([muscle_label(m) for m in names], fontsize=9, color=INK)
    ax2.invert_yaxis()
    ax2.axvline(100, color=GOOD, lw=0.8, ls=":")
    ax2.set_xlim(0, max(120, ymax))
    ax2.set_xlabel("affected side, % of healthy side   (○ first session, ● latest)")
    ax2.grid(axis="x", color="#e6eaee", lw=0.8)
    return fig


def page_two(d: ReportData):
    plt = _style()
    fig = plt.figure(figsize=(8.27, 11.69), dpi=110)
    _header(fig, d, 2)
    n = max(len(d.sessions), 1)
    # 3) synkinesis heat strip
    ax = fig.add_axes([0.30, 0.70, 0.62, 0.2])
    ax.set_title("Synkinesis: involuntary co-activation, affected vs healthy side", x=-0.35)
    names = list(d.muscles)
    grid = np.full((len(names), n), np.nan)
    for i, m in enumerate(names):
        for p in d.muscles[m]:
            if p["synkinesis"] is not None:
                grid[i, p["session_number"] - 1] = p["synkinesis"]
    from matplotlib.colors import LinearSegmentedColormap
    cmap = LinearSegmentedColormap.from_list("syn", ["#eef3f7", "#f6d7a7", "#e08a00", "#c0392b"])
    ax.imshow(np.clip(grid, 0, 1), aspect="auto", cmap=cmap, vmin=0, vmax=1)
    for i in range(len(names)):
        for j in range(n):
            v = grid[i, j]
            if not math.isnan(v):
                ax.text(j, i, f"{v:.2f}" + (" ⚑" if v > SYN_FLAG else ""), ha="center", va="center", fontsize=7.5,
                        color="white" if v > 0.5 else INK, fontweight="bold" if v > SYN_FLAG else "normal")
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels([muscle_label(m) for m in names], fontsize=9, color=INK)
    ax.set_xticks(range(n))
    ax.set_xticklabels([str(j + 1) for j in range(n)])
    ax.set_xlabel(f"session number   (index above {SYN_FLAG} = flagged)")
    for s in ax.spines.values():
        s.set_visible(False)
    # 4) adherence: minutes per session against the plan, with the gaps
    ax3 = fig.add_axes([0.09, 0.40, 0.83, 0.22])
    ax3.set_title("Adherence: minutes per session against the plan")
    dates = [s["started_at"] for s in d.sessions]
    mins = [float(s["minutes"] or 0) for s in d.sessions]
    planned = d.patient.get("planned_minutes")
    x = np.arange(1, len(mins) + 1)
    cols = [GOOD if planned and m >= 0.9 * planned else WARN for m in mins] if planned else [COLORS[0]] * len(mins)
    ax3.bar(x, mins, color=cols, width=0.6)
    if planned:
        ax3.axhline(planned, color=INK, lw=1, ls="--")
        ax3.text(len(mins) + 0.45, planned, f" plan {planned} min", va="bottom", ha="right", fontsize=8, color=INK)
    labels = [f"{i}\n{t:%d %b}" for i, t in zip(x, dates)]
    ax3.set_xticks(x)
    ax3.set_xticklabels(labels, fontsize=7.5)
    for i in range(1, len(dates)):
        gap = (dates[i] - dates[i - 1]).total_seconds() / 86400
        if gap > 3.5:
            ax3.annotate(f"{gap:.0f} d break", xy=(i + 0.5, 0), xytext=(i + 0.5, max(mins) * 0.5), ha="center",
                         fontsize=7.5, color=BAD, arrowprops={"arrowstyle": "-", "color": BAD, "lw": 0.6})
    ax3.set_ylabel("minutes")
    ax3.set_ylim(0, max(mins + [planned or 0]) * 1.25 + 0.1)
    ax3.grid(axis="y", color="#e6eaee", lw=0.8)
    planned_n = d.patient.get("planned_sessions")
    if planned_n:
        ax3.text(0.99, 0.97, f"{len(mins)} of {planned_n} planned sessions", transform=ax3.transAxes, ha="right",
                 va="top", fontsize=9, color=INK, fontweight="bold")
    # 5) comfort and safety: discomfort per session, skin reactions and alerts
    ax4 = fig.add_axes([0.09, 0.12, 0.83, 0.2])
    ax4.set_title("Comfort and safety per session")
    disc = [s["discomfort"] for s in d.sessions]
    dv = [float(v) if v is not None else 0 for v in disc]
    dc = [BAD if v >= 7 else (WARN if v >= 4 else GOOD) for v in dv]
    ax4.bar(x, dv, color=dc, width=0.6)
    ax4.set_ylim(0, 12.5)
    ax4.set_yticks([0, 2, 4, 6, 8, 10])
    ax4.set_ylabel("discomfort (0-10)")
    ax4.set_xticks(x)
    ax4.set_xticklabels([str(i) for i in x])
    ax4.set_xlabel("session number")
    by_session: dict[Any, list[str]] = {}
    for a in d.alerts:
        by_session.setdefault(a["session_id"], []).append(a["alert_type"])
    for xi, s in zip(x, d.sessions):
        marks = []
        if s["skin_reaction"] not in (None, "none"):
            marks.append(f"skin: {s['skin_reaction']}")
        kinds = by_session.get(s["session_id"], [])
        if "over_current" in kinds:
            marks.append("over-current!")
        other = sorted({k for k in kinds if k not in ("over_current", "discomfort")})
        if other:
            marks.append(", ".join(k.replace("_", " ") for k in other[:2]))
        if marks:
            ax4.text(xi, (dv[xi - 1]) + 0.4, "\n".join(marks), ha="center", va="bottom", fontsize=6.5,
                     color=BAD if "over-current!" in marks else INK)
    ax4.grid(axis="y", color="#e6eaee", lw=0.8)
    # alert table
    counts: dict[str, int] = {}
    for a in d.alerts:
        counts[a["alert_type"]] = counts.get(a["alert_type"], 0) + 1
    txt = ("Alerts during therapy: " + ", ".join(f"{k.replace('_', ' ')} ×{v}" for k, v in sorted(counts.items()))
           if counts else "No alerts during therapy.")
    import textwrap
    fig.text(0.09, 0.06, "\n".join(textwrap.wrap(txt, 110)), fontsize=8.5, color=INK, va="top")
    fig.text(0.09, 0.03, "Symmetry = the affected side's activation in its task as % of the healthy side (surface EMG "
                         "envelope).\nResponder: mean asymmetry index |AI| improved by at least 0.10 from the first "
                         "session. ⚑ = synkinesis flagged.", fontsize=7, color=MUTED, va="top")
    return fig


def _figure_png(fig) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def write(d: ReportData, out: Path) -> Path:
    """PNG (both pages stacked), PDF (two A4 pages) or HTML (summary text + the pages as images)."""
    plt = _style()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figs = [page_one(d)] + ([page_two(d)] if d.sessions else [])
    try:
        suffix = out.suffix.lower()
        if suffix == ".pdf":
            from matplotlib.backends.backend_pdf import PdfPages

            with PdfPages(out, metadata={"Title": f"Progress report {d.code}", "Creator": "mimetic"}) as pdf:
                for f in figs:
                    pdf.savefig(f)
        elif suffix == ".png":
            import matplotlib.image

            matplotlib.image.imsave(out, np.concatenate([_figure_png(f) for f in figs], axis=0))
        elif suffix in (".html", ".htm"):
            imgs = []
            for f in figs:
                buf = io.BytesIO()
                f.savefig(buf, format="png")
                imgs.append(base64.b64encode(buf.getvalue()).decode())
            import html

            items = "".join(f'<li style="color:{c}"><span style="color:#1d2733">{html.escape(t)}</span></li>'
                            for c, t in summary(d))
            out.write_text(
                f"<!doctype html><meta charset='utf-8'><title>Progress report {html.escape(d.code)}</title>"
                f"<body style='font-family:sans-serif;max-width:900px;margin:auto'>"
                f"<h1>Progress report · {html.escape(d.code)}</h1><ul>{items}</ul>"
                + "".join(f"<img alt='page {i + 1}' style='width:100%' src='data:image/png;base64,{b}'>"
                          for i, b in enumerate(imgs)) + "</body>")
        else:
            raise ValueError(f"unsupported report format {out.suffix!r}: use .png, .pdf or .html")
    finally:
        for f in figs:
            plt.close(f)
    return out


def make_report(dsn: str, code: str, out: Path) -> Path:
    with psycopg.connect(dsn) as conn:
        data = load(conn, code)
    return write(data, out)

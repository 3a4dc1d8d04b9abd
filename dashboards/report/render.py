"""Writing the report: PDF (A4 pages), PNG (the pages stacked) or HTML (summary text and page images)."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np

from dashboards.report.layout import pyplot
from dashboards.report.model import ReportData
from dashboards.report.page_measures import page_two
from dashboards.report.page_sessions import page_three
from dashboards.report.page_summary import page_one
from dashboards.report.text import BULLETS, summary


def figures(d: ReportData) -> list:
    """The pages: one without sessions, three with."""
    if not d.sessions:
        return [page_one(d, 1)]
    return [page_one(d, 3), page_two(d, 3), page_three(d, 3)]


def _figure_png(fig) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def write(d: ReportData, out: Path) -> Path:
    """PNG (pages stacked), PDF (A4 pages) or HTML (summary text + the pages as images)."""
    plt = pyplot()
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".pdf", ".png", ".html", ".htm"):
        raise ValueError(f"unsupported report format {out.suffix!r}: use .png, .pdf or .html")
    out.parent.mkdir(parents=True, exist_ok=True)
    figs = figures(d)
    try:
        if suffix == ".pdf":
            from matplotlib.backends.backend_pdf import PdfPages

            with PdfPages(out, metadata={"Title": f"Progress report {d.code}", "Creator": "mimetic"}) as pdf:
                for f in figs:
                    pdf.savefig(f)
        elif suffix == ".png":
            import matplotlib.image

            matplotlib.image.imsave(out, np.concatenate([_figure_png(f) for f in figs], axis=0))
        else:
            imgs = []
            for f in figs:
                buf = io.BytesIO()
                f.savefig(buf, format="png")
                imgs.append(base64.b64encode(buf.getvalue()).decode())
            items = "".join(f'<li style="color:{ln.colour}"><span style="color:#1d2733">{html.escape(ln.text)}'
                            f"</span></li>" for ln in summary(d))
            legend = " ".join(f'<span style="color:{c}">●</span> {html.escape(m)}' for c, m in BULLETS)
            out.write_text(
                f"<!doctype html><meta charset='utf-8'><title>Progress report {html.escape(d.code)}</title>"
                f"<body style='font-family:sans-serif;max-width:900px;margin:auto'>"
                f"<h1>Progress report · {html.escape(d.code)}</h1><p style='color:#6b7785'>{legend}</p>"
                f"<ul>{items}</ul>"
                + "".join(f"<img alt='page {i + 1}' style='width:100%' src='data:image/png;base64,{b}'>"
                          for i, b in enumerate(imgs)) + "</body>")
    finally:
        for f in figs:
            plt.close(f)
    return out

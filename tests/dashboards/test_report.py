"""`mimetic report`: PNG, PDF and HTML for a simulated patient; the PDF's pages are rendered to PNG
(pypdfium2); the report's numbers are compared with the database (test_report_numbers.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import psycopg
import pytest
from typer.testing import CliRunner

from dashboards import report
from dashboards.check import ensure_logins
from mimetic.cli import app
from processors.storage import roles

from .conftest import Filled

pytestmark = pytest.mark.stack
ACTOR = report.Actor(name="report-test", channel="cli")


def _audit_rows(filled: Filled, code: str) -> list[tuple]:
    with psycopg.connect(filled.settings.db_dsn()) as conn:
        return conn.execute("select a.actor, a.channel, a.action, a.object, a.clinic_id, a.db_user "
                            "from app.access_audit a join patient p on p.patient_id = a.patient_id "
                            "where p.code = %s and a.object = 'patient' and a.detail = 'report' order by a.audit_id", (code,)).fetchall()


def _ink(img: np.ndarray) -> float:
    """Share of pixels that are not (near) white."""
    return float((img[..., :3].min(axis=-1) < 200).mean())


def test_report_png_pdf_html(filled: Filled, tmp_path: Path, monkeypatch) -> None:
    """The CLI writes PNG and PDF; the PDF's three A4 pages are rendered to PNG (kept in tmp_path for a
    look) and carry ink, the legends and the caveat."""
    import matplotlib.image
    import pypdfium2 as pdfium

    monkeypatch.setenv("MIMETIC_PG_DATABASE", filled.settings.pg_database)
    from mimetic.config import get_settings
    get_settings.cache_clear()
    code = filled.codes[0]
    runner = CliRunner()
    for name in ("r.png", "r.pdf"):
        res = runner.invoke(app, ["report", "--patient", code, "--out", str(tmp_path / name)])
        assert res.exit_code == 0, res.output
    get_settings.cache_clear()
    png = matplotlib.image.imread(tmp_path / "r.png")
    assert png.shape[0] > 3 * png.shape[1] and 0.03 < _ink((png * 255).astype(np.uint8)) < 0.6
    pdf = pdfium.PdfDocument(str(tmp_path / "r.pdf"))
    texts = []
    try:
        assert len(pdf) == 3
        for i in range(3):
            page = pdf[i].render(scale=1).to_pil().convert("RGB")
            page.save(tmp_path / f"page{i + 1}.png")
            img = np.asarray(page)
            assert img.shape[0] > img.shape[1]          # A4 portrait
            assert _ink(img) > 0.02, f"page {i + 1} is blank"
            texts.append(pdf[i].get_textpage().get_text_range())
    finally:
        pdf.close()
    text = "\n".join(texts)
    assert f"Progress report · {code}" in texts[0] and "Symmetry" in texts[0] and "Adherence" in texts[0]
    for legend in ("favourable", "needs attention", "90-110%", "100% = both sides equal",
                   "task performed → co-activated muscle", "healthy", "hatched: not reported",
                   "planned minutes", "not a validated clinical grade", "Device and stimulation"):
        assert legend in text.replace("\r", "").replace("\n", " ").replace("  ", " ") or legend in text, legend
    with psycopg.connect(filled.settings.db_dsn()) as conn:
        data = report.load(conn, code, ACTOR)
    assert len(data.sessions) == 4 and data.muscles
    html = report.write(data, tmp_path / "r.html").read_text()
    assert "data:image/png;base64," in html and code in html and "needs attention" in html


def test_report_through_a_clinic_login_sees_only_its_patients(filled: Filled, tmp_path: Path) -> None:
    """A clinic login reads (and audits) its own patient's report; another clinic's patient does not
    exist for it, and that refused read leaves no audit row."""
    s = filled.settings
    login = ensure_logins(s, filled.clinic_id)["clinic"].login
    dsn = roles.login_dsn(s, login)
    before = _audit_rows(filled, filled.codes[1])
    assert report.make_report(dsn, filled.codes[1], tmp_path / "ok.png", ACTOR).exists()
    after = _audit_rows(filled, filled.codes[1])
    assert after[:len(before)] == before and len(after) == len(before) + 1
    assert after[-1] == ("report-test", "cli", "read", "patient", filled.clinic_id, login)
    with psycopg.connect(s.db_dsn(), autocommit=True) as conn:
        conn.execute("insert into clinic (clinic_id, name) values ('other-clinic', 'Other') on conflict do nothing")
        conn.execute("insert into patient (clinic_id, code) values ('other-clinic', 'P-OTHER1') "
                     "on conflict do nothing")
    with pytest.raises(LookupError):
        report.make_report(dsn, "P-OTHER1", tmp_path / "no.png", ACTOR)
    assert _audit_rows(filled, "P-OTHER1") == []


def test_report_of_a_patient_without_sessions_is_one_page(filled: Filled, tmp_path: Path) -> None:
    import pypdfium2 as pdfium

    s = filled.settings
    with psycopg.connect(s.db_dsn(), autocommit=True) as conn:
        conn.execute("insert into clinic (clinic_id, name) values ('other-clinic', 'Other') on conflict do nothing")
        conn.execute("insert into patient (clinic_id, code) values ('other-clinic', 'P-NEW01') on conflict do nothing")
    out = report.make_report(s.db_dsn(), "P-NEW01", tmp_path / "new.pdf", ACTOR)
    pdf = pdfium.PdfDocument(str(out))
    try:
        assert len(pdf) == 1
        assert "No finished session yet" in pdf[0].get_textpage().get_text_range()
        assert _audit_rows(filled, "P-NEW01")[-1][:4] == ("report-test", "cli", "read", "patient")
    finally:
        pdf.close()

"""The report's pages from a hand-made data model (no stack): a missing discomfort report is shown
as missing (never as 0), a muscle whose session 1 was excluded says so, device faults stay apart
from the patient's comfort, units are pluralised."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from dashboards.report import write
from dashboards.report.clinical import Clinical
from dashboards.report.model import Alert, Patient, ReportData, Session, SynPair
from dashboards.report.symmetry import Point, pct_of_healthy
from dashboards.report.text import plural, summary


def _data() -> ReportData:
    t0 = datetime(2026, 11, 2, 9, tzinfo=timezone.utc)
    sessions = [Session(n, f"00000000-0000-0000-0000-00000000000{n}", (t0 + timedelta(days=2 * (n - 1))).date(),
                        t0 + timedelta(days=2 * (n - 1)), "microcurrent", 20.0, disc, skin, 180.0)
                for n, disc, skin in ((1, 3, "none"), (2, None, None), (3, 5, "redness"))]
    ais = {"zygomaticus": [(2, 0.5), (3, 0.2)], "orbicularis_oculi": [(1, 0.6), (2, 0.4), (3, 0.3)]}
    muscles = {m: [Point(n, a, pct_of_healthy(a, "R")) for n, a in xs] for m, xs in ais.items()}
    alerts = [Alert("a1", "electrode_off", "warning", 1, t0, 0, "zygomaticus", None, None),
              Alert("a2", "over_current", "critical", 3, t0 + timedelta(days=4), None, None, 2600.0, 2000.0)]
    syn = [SynPair("smile", "orbicularis_oculi", {1: 0.31, 3: 0.12}, {1: True, 3: False}, {2})]
    return ReportData(Patient("P-TEST1", "bell_palsy", "R", date(2026, 10, 20), 4, 40, 3, 20),
                      sessions, muscles, {"zygomaticus": {1: "excluded: electrode off"}}, syn, 6, 0.25,
                      {"mean_days_between": 2.0, "max_days_between": 2.0}, alerts, Clinical())


def test_summary_reads_as_a_clinician_needs_it() -> None:
    d = _data()
    lines = {ln.text.split(":")[0]: ln.text for ln in summary(d)}
    text = "\n".join(lines.values())
    sym = next(t for k, t in lines.items() if k.startswith("Symmetry"))
    assert "Zygomaticus" not in sym and "Smile (zygomaticus) from session 2 (session 1: excluded: electrode off)" in sym
    # mean of the two muscles, each from its own first valid session
    first = (pct_of_healthy(0.5, "R") + pct_of_healthy(0.6, "R")) / 2
    assert f"against {first:.0f}% in the first" in sym
    comfort = lines["Patient comfort"]
    assert "discomfort 4.0/10 on average, highest 5 (reported after 2 of 3 sessions)" in comfort
    assert "skin reaction after session 3 (redness)" in comfort
    device = lines["Device and stimulation"]
    assert "1 over-current alert (session 3; stimulation safety" in device
    assert "1 electrode or signal fault (session 1" in device
    assert "skin" not in device and "discomfort" not in device
    assert "one session every 2 days on average, longest break 2 days" in text
    assert not re.search(r"\b1 (days|sessions|muscles|alerts)\b", text)
    assert "orbicularis oculi during smile in 1 of 2 sessions with a value" in text
    assert lines["Clinician grades"].endswith("at intake House-Brackmann IV, Sunnybrook 40 of 100; no assessment "
                                              "recorded since.")


def test_plural() -> None:
    assert [plural(1, "day"), plural(2, "day"), plural(1.5, "day"), plural(0, "session")] == \
        ["1 day", "2 days", "1.5 days", "0 sessions"]


def test_pages_show_missing_discomfort_as_not_reported(tmp_path: Path) -> None:
    import pypdfium2 as pdfium

    out = write(_data(), tmp_path / "r.pdf")
    pdf = pdfium.PdfDocument(str(out))
    try:
        texts = [pdf[i].get_textpage().get_text_range() for i in range(len(pdf))]
        for i in range(len(pdf)):
            pdf[i].render(scale=1).to_pil().save(tmp_path / f"page{i + 1}.png")
    finally:
        pdf.close()
    assert len(texts) == 3
    assert "not\r\nreported" in texts[1] or "not\nreported" in texts[1] or "not reported" in texts[1]
    assert "not reported" in texts[2] and "0/10" not in texts[2]
    # no course: no prescribed limit is invented; the over-current alert's limit only where it fired
    assert texts[2].count("180 / ") == 1 and "180 / 2000" in texts[2]
    assert "rest" in texts[1] and "Smile → orbicularis oculi" in texts[1]


def test_adherence_is_against_the_latest_course_and_names_earlier_ones() -> None:
    from dashboards.report.clinical import Course

    d = _data()
    d.clinical = Clinical(courses=[
        Course(1, "biofeedback_exercise", date(2026, 9, 1), date(2026, 9, 30), 10, 30, None, 7, 6, 200.0, 66.7, 0.0),
        Course(2, "microcurrent", date(2026, 11, 1), None, 12, 20, 200.0, 3, 3, 60.0, 25.0, 180.0)],
        session_course={s.session_id: 2 for s in d.sessions})
    adh = next(ln.text for ln in summary(d) if ln.text.startswith("Adherence"))
    assert adh.startswith("Adherence to the microcurrent course (from 01 Nov 2026; plan 12 sessions of 20 min): "
                          "3 of 12 microcurrent sessions done, 3 of them full length")
    assert "60 min of 240 min planned (25%)" in adh
    assert adh.endswith("Earlier: biofeedback exercise course from 01 Sep 2026, 7 of 10 sessions.")


def test_a_patient_without_sessions_still_gets_grades_and_plan() -> None:
    from dashboards.report.clinical import Course, Grade

    d = _data()
    d.sessions, d.muscles, d.unusable, d.synkinesis, d.alerts = [], {}, {}, [], []
    d.clinical = Clinical(courses=[Course(2, "microcurrent", date(2026, 11, 1), None, 12, 20, 200.0, 0, 0, 0.0,
                                          0.0, None)],
                          grades=[Grade(date(2026, 10, 30), "Dr B", 4, 38)])
    text = [ln.text for ln in summary(d)]
    assert text[0].startswith("No finished session yet")
    assert any(t.startswith("Clinician grades (first → latest): House-Brackmann IV (30 Oct); Sunnybrook 38")
               for t in text)
    assert any(t.startswith("Adherence to the microcurrent course") and "0 of 12 microcurrent sessions" in t
               for t in text)

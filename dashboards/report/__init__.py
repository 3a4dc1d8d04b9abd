"""`mimetic report --patient CODE --out FILE.png|.pdf|.html`: a clinician's progress report.

Three A4 pages in plain language, every figure with its measure, its comparison and its
legend:

1. In short (sentences; bullet colours explained) and symmetry per muscle across
   sessions: the affected side in % of the healthy side, the report's one symmetry
   measure (`symmetry`), with each muscle's trend.
2. Each muscle's first valid session against its latest (which session and why, when a
   session was not usable), synkinesis per triggering task and co-activated muscle
   (signed index, colour scale), minutes against the course plan, patient comfort
   (discomfort with "not reported" shown as such, skin reactions).
3. Every session (therapy, stimulation current against the prescribed limit, device and
   signal alerts apart from the patient's own reports), clinician grades over time
   (House-Brackmann, Sunnybrook), patient-reported outcomes, a caveat and definitions.

Reads the clinic views through any connection allowed to read them: a clinic login
(row-level security keeps it to its own patients) or the owner. `model.load` builds the
data model every page prints from; every load appends a row to the access audit
(app.access_audit, migration 0014) in the same transaction as the reads.
"""

from __future__ import annotations

from pathlib import Path

import psycopg

from clinical.service import Actor
from dashboards.report.model import ReportData, load
from dashboards.report.render import figures, write
from dashboards.report.text import summary

__all__ = ["Actor", "ReportData", "figures", "load", "make_report", "summary", "write"]


def make_report(dsn: str, code: str, out: Path, actor: Actor) -> Path:
    """Read the patient's data (the read is audited for `actor`) and write the report to `out`."""
    with psycopg.connect(dsn) as conn:
        data = load(conn, code, actor)
    return write(data, out)

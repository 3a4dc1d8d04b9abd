"""The demo's closing output fits 80 columns with nothing cut, whatever the values (issue 15)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from mimetic.config import REPO_ROOT, Settings
from mimetic.demo_results import Outputs, PatientRow, closing_lines, explore_commands, legend, results_table

ai = st.one_of(st.none(), st.floats(0, 1))
yn = st.one_of(st.none(), st.booleans())
rows = st.builds(
    PatientRow, code=st.from_regex(r"P-[0-9A-Z]{5}", fullmatch=True), affected_side=st.sampled_from("LR"),
    sessions=st.integers(0, 99), ai_measured=st.tuples(ai, ai), ai_truth=st.tuples(ai, ai),
    responder=st.tuples(yn, st.booleans()), synkinesis=st.tuples(st.booleans(), st.booleans()),
    faults=st.tuples(st.integers(0, 10), st.integers(0, 10)), alerts=st.integers(0, 999))


@settings(max_examples=60, deadline=None)
@given(st.lists(rows, min_size=1, max_size=6))
def test_table_fits_80_columns_uncut(patients: list[PatientRow]) -> None:
    console = Console(width=80, record=True, file=open("/dev/null", "w"))
    console.print(results_table(patients))
    text = console.export_text()
    assert max(len(ln) for ln in text.splitlines()) <= 80
    assert "…" not in text
    for p in patients:
        assert p.code in text and f"{p.faults[0]}/{p.faults[1]}" in text
    assert all(len(ln) <= 80 for ln in legend().splitlines())


def test_closing_lines_fit_and_name_the_database() -> None:
    out = REPO_ROOT / "out" / "demo"
    outputs = Outputs(out, [out / "reports" / "P-AAAAA.pdf", out / "reports" / "P-AAAAA.png"], out / "grafana", 8)
    cmds = explore_commands("mimetic_demo_with_a_long_name", "P-AAAAA", "demo-clinic", out)
    text = "\n".join(closing_lines("mimetic_demo_with_a_long_name", Settings(), outputs, cmds))
    assert max(len(ln) for ln in text.splitlines()) <= 80, text
    assert all("--database mimetic_demo_with_a_long_name" in c for c in cmds)
    assert Path(out).name in text


def test_alert_kinds_count_injected_raised_and_unexplained() -> None:
    from mimetic.demo_alerts import Episode, kind_rows, summary_line

    truth = {"patients": [{"sessions": [
        {"session_id": "s1", "faults": [{"type": "electrode_liftoff", "channel": 2, "start_s": 5, "end_s": 8},
                                        {"type": "low_battery", "channel": None, "start_s": 0, "end_s": 20}]},
        {"session_id": "s2", "faults": [{"type": "clipping", "channel": 0, "start_s": 5, "end_s": 17},
                                        {"type": "silent_device", "channel": None, "start_s": 15, "end_s": 19}]}]}]}
    eps = [Episode("d", "s1", "electrode_off", 2), Episode("d", "s1", "mains_noise", 2),  # a side effect
           Episode("d", "s1", "electrode_off", 3),  # another channel: unexplained
           Episode("d", "s2", "battery_low", None),  # its fault was in another session
           Episode("d", "s2", "sequence_restart", None), Episode("d", None, "discomfort", None)]
    rows = {r.alert_type: r for r in kind_rows(eps, truth)}
    assert (rows["electrode_off"].injected, rows["electrode_off"].raised, rows["electrode_off"].episodes,
            rows["electrode_off"].unexplained) == (1, 1, 2, 1)
    assert (rows["battery_low"].injected, rows["battery_low"].raised, rows["battery_low"].unexplained) == (1, 0, 1)
    assert (rows["clipping"].injected, rows["clipping"].raised, rows["clipping"].episodes) == (1, 0, 0)
    assert rows["mains_noise"].unexplained == rows["sequence_restart"].unexplained == 0
    assert rows["discomfort"].unexplained == 0
    assert "device_silent" not in rows  # 4 s of silence: under the 5 s threshold, nothing to raise
    assert summary_line(list(rows.values())) == "1/3 injected faults raised; 2 unexplained of 6 alerts"

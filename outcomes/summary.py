"""Responder rates per course type and definition, with Wilson intervals, and the
differences between course types with Newcombe intervals (pure; the CLI prints them)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations

from outcomes.definitions import Definition
from outcomes.proportions import CONFIDENCE, Difference, Rate, newcombe_difference, wilson_interval


@dataclass(frozen=True)
class PatientResult:
    """One patient's course type and status under each definition (None: not evaluable)."""

    therapy_type: str
    semg: bool | None
    grade: bool | None
    pro: bool | None

    def status(self, definition: Definition) -> bool | None:
        return {Definition.SEMG: self.semg, Definition.GRADE: self.grade, Definition.PRO: self.pro}[definition]


@dataclass(frozen=True)
class GroupRate:
    definition: Definition
    therapy_type: str
    patients: int          # in the course type, evaluable or not
    rate: Rate             # over the evaluable ones


@dataclass(frozen=True)
class Comparison:
    definition: Definition
    therapy_a: str
    therapy_b: str
    difference: Difference  # rate(a) - rate(b)


@dataclass(frozen=True)
class OutcomeTable:
    confidence: float
    rates: tuple[GroupRate, ...]
    comparisons: tuple[Comparison, ...]


def therapy_order(therapies: Iterable[str]) -> list[str]:
    """Microcurrent first (the product's question), the rest by name."""
    return sorted(set(therapies), key=lambda t: (t != "microcurrent", t))


def summarise(results: Sequence[PatientResult], confidence: float = CONFIDENCE) -> OutcomeTable:
    therapies = therapy_order(r.therapy_type for r in results)
    rates: list[GroupRate] = []
    comparisons: list[Comparison] = []
    for d in Definition:
        by_t: dict[str, Rate] = {}
        for t in therapies:
            group = [r for r in results if r.therapy_type == t]
            known = [r.status(d) for r in group if r.status(d) is not None]
            by_t[t] = wilson_interval(sum(1 for v in known if v), len(known), confidence)
            rates.append(GroupRate(d, t, len(group), by_t[t]))
        for a, b in combinations(therapies, 2):
            ra, rb = by_t[a], by_t[b]
            comparisons.append(Comparison(d, a, b, newcombe_difference(ra.successes, ra.n, rb.successes, rb.n,
                                                                      confidence)))
    return OutcomeTable(confidence, tuple(rates), tuple(comparisons))


#: short labels for the 80-column table
LABEL = {Definition.SEMG: "sEMG", Definition.GRADE: "grade", Definition.PRO: "PRO"}


def _pct(v: float | None) -> str:
    return "    -" if v is None else f"{100 * v:5.1f}"


def format_table(table: OutcomeTable) -> list[str]:
    """Lines of at most 80 characters: rates, then differences, per definition."""
    level = f"{100 * table.confidence:g} %"
    lines = [f"Responder rate by therapy course ({level} Wilson interval)",
             f"{'def':<7}{'course type':<22}{'pts':>5}{'n':>5}{'resp':>6}{'rate %':>8}  {level} CI"]
    for g in table.rates:
        r = g.rate
        ci = f"[{_pct(r.low)}, {_pct(r.high)}]" if r.n else "no course evaluable"
        lines.append(f"{LABEL[g.definition]:<7}{g.therapy_type[:21]:<22}{g.patients:>5}{r.n:>5}{r.successes:>6}"
                     f"{_pct(r.estimate):>8}  {ci}")
    lines += ["", f"Difference in rate, a - b, points ({level} Newcombe interval)",
              f"{'def':<7}{'a - b':<44}{'diff':>7}  {level} CI"]
    for c in table.comparisons:
        d = c.difference
        pair = f"{c.therapy_a[:21]} - {c.therapy_b[:21]}"
        diff = "      -" if d.estimate is None else f"{100 * d.estimate:+7.1f}"
        ci = "" if d.low is None else f"[{100 * d.low:+6.1f}, {100 * d.high:+6.1f}]"
        lines.append(f"{LABEL[c.definition]:<7}{pair:<44}{diff:>7}  {ci}".rstrip())
    lines += ["", "sEMG = semg_symmetry, grade = clinician_grade, PRO = patient_reported",
              "pts: patients in the course type; n: those the definition could",
              "evaluate; resp: responders among them (`mimetic outcomes --definitions`)."]
    return lines

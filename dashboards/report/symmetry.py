"""The report's one symmetry measure, its first-against-latest comparison and the
sessions the sEMG responder definition is applied to (pure).

Symmetry is the affected/healthy ratio of activity levels
(`processors.measures.affected_ratio`), shown as the affected side in % of the
healthy side (100 % = symmetric). The asymmetry index |AI| is the same quantity
for a known affected side: |AI| = |1 - r| / (1 + r), r the ratio (`ai_from_ratio`).

First against latest, per muscle (`compare`): the muscle's first session with a
valid measurement and its latest one, a description of the change over every
finished session. A muscle whose session 1 gave no valid value (electrode fault,
over-current, no activity above rest) starts at its next valid session, and the
report says so. Only muscles with at least two valid sessions enter the mean, so
the means of the first and latest values and the mean change come from the same
muscles. It is not the responder criterion.

The responder verdict is `outcomes.definitions.semg_symmetry` (the project's one
definition, also the clinic view patient_responder's and the outcomes'), applied
to the valid sessions of the patient's latest therapy course, or to every
finished session without a course (`responder_series`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from typing import Iterable, Mapping, Sequence

from outcomes.definitions import SemgOutcome, semg_symmetry


@dataclass(frozen=True)
class Point:
    """One valid measurement of a muscle in a session."""

    session_number: int
    ai: float            # asymmetry index (L - R) / (L + R), in [-1, 1]
    pct: float           # affected side in % of the healthy side (or weaker in % of stronger)


@dataclass(frozen=True)
class MuscleChange:
    muscle: str
    first: Point
    latest: Point

    @property
    def change_pct(self) -> float:
        return self.latest.pct - self.first.pct


@dataclass(frozen=True)
class Comparison:
    """First against latest over the muscles with >= 2 valid sessions."""

    muscles: tuple[MuscleChange, ...]
    sessions: int                           # finished sessions of the patient

    @property
    def first_abs_ai(self) -> float | None:
        return _mean(abs(m.first.ai) for m in self.muscles)

    @property
    def latest_abs_ai(self) -> float | None:
        return _mean(abs(m.latest.ai) for m in self.muscles)

    @property
    def abs_ai_improvement(self) -> float | None:
        f, last = self.first_abs_ai, self.latest_abs_ai
        return None if f is None or last is None else f - last

    @property
    def first_pct(self) -> float | None:
        return _mean(m.first.pct for m in self.muscles)

    @property
    def latest_pct(self) -> float | None:
        return _mean(m.latest.pct for m in self.muscles)


def pct_of_healthy(ai: float, affected_side: str | None) -> float:
    """Affected side in % of the healthy side from the AI (left minus right); without a known affected
    side, the weaker side in % of the stronger one."""
    if affected_side == "L":
        return (1 + ai) / (1 - ai) * 100 if ai < 1 else math.inf
    if affected_side == "R":
        return (1 - ai) / (1 + ai) * 100 if ai > -1 else math.inf
    return (1 - abs(ai)) / (1 + abs(ai)) * 100


def ai_from_ratio(ratio: float) -> float:
    """|AI| implied by an affected/healthy ratio r: |1 - r| / (1 + r)."""
    return abs(1 - ratio) / (1 + ratio)


def compare(series: Mapping[str, Sequence[Point]], sessions: int) -> Comparison:
    """Each muscle's first and latest valid session (points in any order)."""
    out = []
    for muscle, pts in sorted(series.items()):
        valid = sorted((p for p in pts if math.isfinite(p.ai)), key=lambda p: p.session_number)
        if len(valid) >= 2:
            out.append(MuscleChange(muscle, valid[0], valid[-1]))
    return Comparison(tuple(out), sessions)


def responder_series(series: Mapping[str, Sequence[Point]], days: Mapping[int, date],
                     window: tuple[date, date | None] | None) -> dict[str, list[Point]]:
    """Each muscle's valid points (session order) in the sessions the responder verdict uses:
    those whose day (clinic time zone, `days`: session number -> day) lies in the course
    `window` (start, end or None while open), every session when `window` is None."""
    out: dict[str, list[Point]] = {}
    for muscle, pts in sorted(series.items()):
        keep = [p for p in sorted(pts, key=lambda p: p.session_number) if math.isfinite(p.ai) and (
            window is None or (p.session_number in days and days[p.session_number] >= window[0]
                               and (window[1] is None or days[p.session_number] <= window[1])))]
        if keep:
            out[muscle] = keep
    return out


def semg_responder(series: Mapping[str, Sequence[Point]]) -> SemgOutcome:
    """`outcomes.definitions.semg_symmetry` of the points of `responder_series`."""
    return semg_symmetry({m: [p.ai for p in pts] for m, pts in series.items()})


def trend_per_session(pts: Sequence[Point]) -> float | None:
    """Least-squares slope of % of the healthy side per session (percentage points per session);
    None below 3 valid sessions."""
    if len(pts) < 3:
        return None
    xs = [float(p.session_number) for p in pts]
    ys = [p.pct for p in pts]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx


def _mean(xs: Iterable[float]) -> float | None:
    v = list(xs)
    return sum(v) / len(v) if v else None

"""Domain vocabulary shared by every layer: muscles, sides, tasks, therapies.

One place, so the wire format, the simulator, the DSP layer and the database
agree on spelling. A device's channel map assigns each channel one
(muscle, side); the map belongs to the device/session, never to the code.
"""

from __future__ import annotations

from enum import StrEnum


class Side(StrEnum):
    LEFT = "L"
    RIGHT = "R"

    @property
    def other(self) -> "Side":
        return Side.RIGHT if self is Side.LEFT else Side.LEFT


#: facial sEMG sites, and the voluntary movement each one mainly serves
MUSCLES: dict[str, str] = {
    "frontalis": "brow_raise",
    "corrugator": "frown",
    "orbicularis_oculi": "eye_closure_tight",
    "zygomaticus": "smile",
    "levator_labii": "snarl",
    "orbicularis_oris": "pucker",
    "depressor_anguli_oris": "lip_depression",
    "mentalis": "lip_depression",
    "platysma": "lip_depression",
}

#: standard voluntary movements of clinical grading (House-Brackmann, Sunnybrook)
TASKS: tuple[str, ...] = (
    "rest",
    "brow_raise",
    "frown",
    "eye_closure_gentle",
    "eye_closure_tight",
    "smile",
    "snarl",
    "pucker",
    "lip_depression",
    "mvc_calibration",
)

THERAPY_TYPES: tuple[str, ...] = ("microcurrent", "biofeedback_exercise", "acupuncture", "massage", "assessment")

#: therapy course types (migration 0014, app.course_types()): the session therapies a course can
#: prescribe, and usual_care, a comparison course without device therapy
COURSE_TYPES: tuple[str, ...] = ("microcurrent", "biofeedback_exercise", "acupuncture", "massage", "usual_care")

#: patient-reported outcome instruments: (score_min, score_max, higher_is_better, items, item_min,
#: item_max); the table pro_instrument of migration 0014 states the same (a test compares them)
PRO_RANGES: dict[str, tuple[float, float, bool, int, int, int]] = {
    "face": (0, 100, True, 15, 1, 5),      # Facial Clinimetric Evaluation scale (Kahn 2001)
    "saq": (20, 100, False, 9, 1, 5),      # Synkinesis Assessment Questionnaire (Mehta 2007)
    "grc": (-7, 7, True, 1, -7, 7),        # global rating of change (Jaeschke 1989)
}
PRO_INSTRUMENTS: tuple[str, ...] = tuple(PRO_RANGES)


def pro_score(instrument: str, items: list[int]) -> float:
    """Total score from item answers: SAQ = sum / 45 x 100 (Mehta 2007); GRC = its one answer;
    FaCE = (mean item - 1) / 4 x 100 (0 worst, 100 best), a simplification of Kahn 2001's
    domain-weighted total that assumes every item scored so that 5 is best."""
    if instrument == "saq":
        return round(sum(items) / 45 * 100, 2)
    if instrument == "grc":
        return float(items[0])
    return round((sum(items) / len(items) - 1) / 4 * 100, 2)


def check_pro(instrument: str, score: float | None, items: list[int] | None) -> float:
    """The total score of a PRO answer (from the items when not given); ValueError for any value
    outside the instrument's ranges or a score that does not match its items."""
    lo, hi, _better, n_items, imin, imax = PRO_RANGES[instrument]
    if items is not None:
        if len(items) != n_items:
            raise ValueError(f"{instrument} has {n_items} items, got {len(items)}")
        bad = [a for a in items if not imin <= a <= imax]
        if bad:
            raise ValueError(f"{instrument} item answers must be {imin}..{imax}, got {bad[0]}")
        derived = pro_score(instrument, items)
        if score is None:
            score = derived
        elif abs(score - derived) > 0.01:
            raise ValueError(f"{instrument} score {score} does not match its items ({derived})")
    if score is None:
        raise ValueError("give the score or the item answers")
    if not lo <= score <= hi:
        raise ValueError(f"{instrument} score {score:g} is outside {lo:g}..{hi:g}")
    return score

ETIOLOGIES: tuple[str, ...] = ("bell_palsy", "post_surgical", "stroke", "ramsay_hunt", "trauma", "other")


def channel_name(muscle: str, side: Side | str) -> str:
    """Canonical channel label, e.g. `zygomaticus_L` (also the CSV column name)."""
    return f"{muscle}_{Side(side).value}"


def parse_channel_name(name: str) -> tuple[str, Side]:
    """`zygomaticus_L` -> ("zygomaticus", Side.LEFT); ValueError for anything else."""
    muscle, sep, side = name.rpartition("_")
    if not sep or side not in ("L", "R") or not muscle:
        raise ValueError(f"channel name {name!r} is not <muscle>_<L|R>")
    return muscle, Side(side)

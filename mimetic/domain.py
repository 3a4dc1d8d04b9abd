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

#: patient-reported outcome instruments (migration 0014, table pro_instrument)
PRO_INSTRUMENTS: tuple[str, ...] = ("face", "saq", "grc")

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

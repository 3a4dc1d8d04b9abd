"""Responder definitions: one function each, pure; the database restates them in SQL
(migration 0016, ``app.outcome_*`` functions) and tests/outcomes keeps the two equal.

Three definitions answer "did this patient improve over their therapy course?" from
three independent sources. None of them is the truth; they are reported side by side,
each with its own n (a patient counts only where the definition can be evaluated).

semg_symmetry    the session analyses' asymmetry index of each muscle pair
clinician_grade  House-Brackmann and Sunnybrook assessments by a clinician
patient_reported the FaCE scale and the global rating of change, from the patient
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


class Definition(enum.StrEnum):
    SEMG = "semg_symmetry"
    GRADE = "clinician_grade"
    PRO = "patient_reported"


#: most valid sessions averaged at each end of a course for the sEMG definition
SEMG_END_SESSIONS = 3
#: fewest valid sessions of a muscle for it to count in the sEMG definition
SEMG_MIN_SESSIONS = 2
#: fall of the mean |AI| (first sessions minus last sessions, averaged over muscles) that counts
SEMG_MIN_IMPROVEMENT = 0.10
#: House-Brackmann grades gained (a lower grade is better) that count
HB_MIN_GAIN = 1
#: Sunnybrook composite points gained that count
SUNNYBROOK_MIN_GAIN = 10
#: FaCE total points gained that count
FACE_MIN_GAIN = 10
#: global rating of change (-7..+7) at or above which the patient counts (+4 = "moderately better")
GRC_MIN = 4


@dataclass(frozen=True)
class SemgOutcome:
    """Mean |AI| over the first and last sessions, averaged over the muscles that had enough."""

    muscles: int
    first_abs_ai: float | None
    last_abs_ai: float | None
    improvement: float | None
    responder: bool | None


def semg_end_sessions(valid_sessions: int, end_sessions: int = SEMG_END_SESSIONS) -> int:
    """Sessions averaged at each end for a muscle with ``valid_sessions``: min(3, n // 2),
    0 below 2 (the muscle does not count). The two ends never share a session."""
    if valid_sessions < SEMG_MIN_SESSIONS:
        return 0
    return min(end_sessions, valid_sessions // 2)


def semg_symmetry(abs_ai_by_muscle: Mapping[str, Sequence[float | None]],
                  end_sessions: int = SEMG_END_SESSIONS,
                  min_improvement: float = SEMG_MIN_IMPROVEMENT) -> SemgOutcome:
    """sEMG symmetry responder: the project's one sEMG responder definition.

    Used by the outcomes per therapy course (migration 0016, ``app.course_outcome``), the
    clinic view ``patient_responder`` (migration 0018), the progress report's responder
    line and the demo table; tests keep the SQL equal to this function.

    Input: per muscle, the AI (or |AI|) of its valid sessions in time order (a session is
    valid for a muscle when its analysis gave the pair an AI: faulty electrodes and
    silent pairs leave it out, so "first" never silently means a faulty session 1).
    With n the muscle's valid sessions, it counts when n >= 2, and
    k = min(3, n // 2) sessions are averaged at each end:
    change = mean |AI| of the first k - mean |AI| of the last k (positive = more
    symmetric). Three sessions at each end keep one odd day from deciding once a
    course has 6; a shorter course (a 4-session demo, a course under way) still gets
    a verdict from its ends (k = 1 at n = 2 or 3, k = 2 at n = 4 or 5), and 2k <= n
    keeps the two ends apart. The improvement is the mean change over counted muscles
    (= mean first - mean last over the same muscles); responder when it is
    >= ``min_improvement`` (0.10 of |AI|, the project's stated threshold, about a
    quarter of the typical baseline |AI| of 0.3-0.6 in moderate palsy; AI from
    processors.measures.balance). None (not evaluable) when no muscle counts.
    """
    if end_sessions < 1:
        raise ValueError("end_sessions must be >= 1")
    firsts: list[float] = []
    lasts: list[float] = []
    for values in abs_ai_by_muscle.values():
        v = [abs(float(x)) for x in values if x is not None and math.isfinite(x)]
        k = semg_end_sessions(len(v), end_sessions)
        if not k:
            continue
        firsts.append(math.fsum(v[:k]) / k)
        lasts.append(math.fsum(v[-k:]) / k)
    if not firsts:
        return SemgOutcome(0, None, None, None, None)
    n = len(firsts)
    first, last = math.fsum(firsts) / n, math.fsum(lasts) / n
    improvement = math.fsum(f - la for f, la in zip(firsts, lasts)) / n
    return SemgOutcome(n, first, last, improvement, improvement >= min_improvement - 1e-12)


def clinician_grade(hb_baseline: int | None, hb_latest: int | None,
                    sunnybrook_baseline: float | None, sunnybrook_latest: float | None,
                    hb_min_gain: int = HB_MIN_GAIN, sunnybrook_min_gain: float = SUNNYBROOK_MIN_GAIN) -> bool | None:
    """Clinician-grade responder.

    Responder when House-Brackmann improves by >= 1 grade (baseline - latest, I best,
    VI worst; House & Brackmann 1985: grades are the scale's only unit, so one grade is
    the smallest change it can show) OR the Sunnybrook composite (0-100, Ross et al.
    1996) rises by >= 10 points (a stated threshold: well above the scale's inter-rater
    error, ICC 0.89-0.93 in Neely et al. 2010; no MCID is established). Baseline is the
    assessment at or before the course start, latest the last one after it. A scale
    counts only with both values; None when neither scale has both.
    """
    hb = None if hb_baseline is None or hb_latest is None else (hb_baseline - hb_latest) >= hb_min_gain
    sb = (None if sunnybrook_baseline is None or sunnybrook_latest is None
          else (sunnybrook_latest - sunnybrook_baseline) >= sunnybrook_min_gain)
    if hb is None and sb is None:
        return None
    return bool(hb) or bool(sb)


def patient_reported(face_baseline: float | None, face_latest: float | None, grc_latest: int | None,
                     face_min_gain: float = FACE_MIN_GAIN, grc_min: int = GRC_MIN) -> bool | None:
    """Patient-reported responder.

    Responder when the FaCE total score (0-100, Kahn et al. 2001) rises by >= 10
    points (a stated threshold; no MCID is established for FaCE) OR the latest global
    rating of change (the 15-point scale of Jaeschke et al. 1989, -7 "a very great deal
    worse" .. +7 "a very great deal better") is +4 "moderately better" or more: the lower
    end of what Jaeschke calls a moderate change, "much better" on a 7-point scale; +1..+3
    is their small change. None when neither is available.
    """
    face = None if face_baseline is None or face_latest is None else (face_latest - face_baseline) >= face_min_gain
    grc = None if grc_latest is None else grc_latest >= grc_min
    if face is None and grc is None:
        return None
    return bool(face) or bool(grc)

"""A simulated clinical cohort for outcome studies: therapy courses with known effects,
clinician grades and patient-reported outcomes measured from the true recovery with noise.

Pure and deterministic (numpy, seeded). `ingest/simulator.py` streams a course's sessions
(sEMG) from :meth:`CoursePatient.profile`; tests and `mimetic simulate --cohort` enter the
patients, courses and assessments through the clinic's records.

Model, per patient (index i, seed s):

* therapy course: type t (mimetic.domain.COURSE_TYPES, assigned in turn), 10-20 sessions of 20-40 planned minutes.
* latent recovery: with probability ``effects[t]`` the patient recovers (a true responder).
  Facial function phi in [0, 1] (1 = normal): phi_0 ~ U(0.2, 0.5); a responder's
  phi_k = phi_0 + (phi_max - phi_0)(1 - exp(-k / tau)), phi_max ~ U(0.85, 0.97),
  tau ~ U(1.5, 4) sessions; a non-responder stays, phi_k = phi_0 + U(-0.02, 0.02) per session.
  phi_k is the affected side's strength in the sEMG simulator (ingest.simulator.PatientProfile
  .strength), so sEMG symmetry, grades and PROs all measure one truth.
* clinician grades (baseline, mid-course, end): Sunnybrook composite = 100 phi + N(0, 6)
  (rater error: ICC ~0.9 for a between-patient SD of ~20, Neely et al. 2010), rounded,
  clipped to 0-100; House-Brackmann from phi + N(0, 0.05) by the cut points
  0.9 / 0.75 / 0.5 / 0.3 / 0.1 (I..VI).
* patient-reported: FaCE total = 25 + 65 phi + a patient offset N(0, 8) + N(0, 5) per
  questionnaire, clipped 0-100; global rating of change at the end from the perceived change
  phi_end - phi_0 + N(0, 0.1) on the 15-point scale (-7..+7) by symmetric cut points
  0.03 / 0.08 / 0.15 / 0.25 / 0.35 / 0.45 / 0.55 (+1 .. +7; ``GRC_CUTS``).

Because rater and questionnaire noise misclassify some patients, the rate a definition can
find is not exactly the latent rate: :func:`expected_rates` computes, by Monte Carlo over the
same generator, the population rate each definition estimates (the target its confidence
interval should cover), beside the latent rate.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ingest.simulator import PatientProfile, patient_code
from mimetic.domain import ETIOLOGIES, MUSCLES, Side
from outcomes.definitions import Definition, clinician_grade, patient_reported

#: true recovery probability per course type (mimetic.domain.COURSE_TYPES; usual_care = no device
#: therapy): the cohort test's default
DEFAULT_EFFECTS: dict[str, float] = {"microcurrent": 0.6, "biofeedback_exercise": 0.4, "usual_care": 0.2}
HB_CUTS = (0.9, 0.75, 0.5, 0.3, 0.1)  # phi at or above cut j -> grade j + 1
SUNNYBROOK_SD = 6.0
HB_PHI_SD = 0.05
FACE_OFFSET_SD = 8.0
FACE_SD = 5.0
GRC_SD = 0.1
#: perceived change above cut j -> GRC +7 - j (the 15-point scale of Jaeschke et al. 1989, -7..+7)
GRC_CUTS = (0.55, 0.45, 0.35, 0.25, 0.15, 0.08, 0.03, -0.03, -0.08, -0.15, -0.25, -0.35, -0.45, -0.55)


@dataclass(frozen=True)
class Assessment:
    """One assessment visit after ``after_sessions`` sessions of the course (0 = baseline)."""

    after_sessions: int
    hb_grade: int
    sunnybrook: int
    face_total: int
    grc: int | None  # asked only after baseline


@dataclass(frozen=True)
class CoursePatient:
    index: int
    code: str
    therapy_type: str
    responder: bool
    etiology: str
    affected_side: Side
    phi0: float
    phi_max: float
    tau_sessions: float
    planned_sessions: int
    planned_minutes: int
    current_limit_ua: float | None
    assessments: tuple[Assessment, ...]
    seed: int

    def phi(self, k: int) -> float:
        """True facial function after k sessions: the sEMG simulator's affected-side strength."""
        return self._profile.strength(k)

    @property
    def session_therapy(self) -> str:
        """The therapy type of the course's sessions (usual care: assessment sessions only)."""
        return "assessment" if self.therapy_type == "usual_care" else self.therapy_type

    @cached_property
    def _profile(self) -> PatientProfile:
        p = PatientProfile.random(self.index, self.seed)
        p.code, p.affected_side, p.responder, p.etiology = self.code, self.affected_side, self.responder, self.etiology
        p.strength0, p.strength_max, p.tau_sessions = self.phi0, self.phi_max, self.tau_sessions
        return p

    def profile(self) -> PatientProfile:
        """The sEMG simulator's patient with this recovery (strength = phi), a fresh copy."""
        return dataclasses.replace(self._profile)

    @property
    def baseline(self) -> Assessment:
        return self.assessments[0]

    @property
    def latest(self) -> Assessment:
        return self.assessments[-1]

    def responder_by(self) -> dict[Definition, bool | None]:
        """The grade and PRO definitions applied to this patient's simulated measurements."""
        b, e = self.baseline, self.latest
        return {Definition.GRADE: clinician_grade(b.hb_grade, e.hb_grade, b.sunnybrook, e.sunnybrook),
                Definition.PRO: patient_reported(b.face_total, e.face_total, e.grc)}


def hb_from_phi(phi: float) -> int:
    """House-Brackmann grade I-VI (1-6) of a facial function phi."""
    for j, cut in enumerate(HB_CUTS):
        if phi >= cut:
            return j + 1
    return 6


def grc_from_change(change: float) -> int:
    """Global rating of change, -7 .. +7, of a perceived change in facial function."""
    for j, cut in enumerate(GRC_CUTS):
        if change > cut:
            return 7 - j
    return -7


def course_patient(index: int, seed: int, effects: Mapping[str, float], sessions: int | None = None) -> CoursePatient:
    """Patient ``index`` of the cohort: therapies assigned in turn, everything else drawn.
    ``sessions`` overrides the drawn 10-20 planned sessions (a short course to stream in a test)."""
    if not effects:
        raise ValueError("effects: at least one course type")
    therapies = list(effects)
    therapy = therapies[index % len(therapies)]
    p_rec = float(effects[therapy])
    if not 0.0 <= p_rec <= 1.0:
        raise ValueError(f"effect of {therapy} must be a probability, got {p_rec}")
    rng = np.random.default_rng([seed, index, 41])
    responder = bool(rng.random() < p_rec)
    phi0 = float(rng.uniform(0.2, 0.5))
    phi_max = float(rng.uniform(0.85, 0.97))
    tau = float(rng.uniform(1.5, 4.0))
    drawn_sessions = int(rng.integers(10, 21))  # drawn either way: the other draws stay the same
    planned = drawn_sessions if sessions is None else max(1, int(sessions))
    minutes = int(rng.choice([20, 25, 30, 35, 40]))
    limit = float(rng.choice([200.0, 300.0, 400.0])) if therapy == "microcurrent" else None
    face_offset = float(rng.normal(0.0, FACE_OFFSET_SD))
    patient = CoursePatient(
        index=index, code=patient_code(rng), therapy_type=therapy, responder=responder,
        etiology=str(rng.choice(ETIOLOGIES[:4])), affected_side=Side("L" if rng.random() < 0.5 else "R"),
        phi0=phi0, phi_max=phi_max, tau_sessions=tau, planned_sessions=planned,
        planned_minutes=minutes, current_limit_ua=limit, assessments=(), seed=seed)
    visits = []
    for k in (0, planned // 2, planned):
        phi = patient.phi(k)
        sb = int(np.clip(round(100 * phi + rng.normal(0.0, SUNNYBROOK_SD)), 0, 100))
        hb = hb_from_phi(phi + float(rng.normal(0.0, HB_PHI_SD)))
        face = int(np.clip(round(25 + 65 * phi + face_offset + rng.normal(0.0, FACE_SD)), 0, 100))
        grc = None if k == 0 else grc_from_change(phi - phi0 + float(rng.normal(0.0, GRC_SD)))
        visits.append(Assessment(k, hb, sb, face, grc))
    return dataclasses.replace(patient, assessments=tuple(visits))


def cohort(n_patients: int, seed: int, effects: Mapping[str, float] = DEFAULT_EFFECTS,
           sessions: int | None = None) -> list[CoursePatient]:
    return [course_patient(i, seed, effects, sessions) for i in range(n_patients)]


def true_abs_ai(patient: CoursePatient) -> dict[str, list[float]]:
    """Noise-free |AI| per muscle for each session k = 0 .. planned - 1 of the course:
    |h - a| / (h + a), h the healthy side's gain, a the affected side's strength (the sEMG
    simulator's signal model, whose levels are proportional to these gains)."""
    prof = patient._profile
    h = prof.natural_asym if patient.affected_side == Side.RIGHT else 1.0
    phis = np.array([patient.phi(k) for k in range(patient.planned_sessions)])
    out = {}
    for m in MUSCLES:
        a = np.clip(phis * prof.branch_factor[m], 0.05, 1.0)
        out[m] = [float(x) for x in np.abs(h - a) / (h + a)]
    return out


@dataclass(frozen=True)
class ExpectedRate:
    therapy_type: str
    latent: float
    by_definition: dict[Definition, float]


def conditional_rates(draws: int = 5_000, seed: int = 987_654) -> dict[bool, dict[Definition, float]]:
    """P(definition says responder | latent responder status), by Monte Carlo over ``draws``
    simulated patients of each status (the measurement model does not depend on the therapy).
    Standard error <= 0.5 / sqrt(draws): 0.007 at 5 000."""
    from outcomes.definitions import semg_symmetry

    out: dict[bool, dict[Definition, float]] = {}
    for status in (True, False):
        counts = {d: 0 for d in Definition}
        evaluable = {d: 0 for d in Definition}
        for i in range(draws):
            p = course_patient(i, seed, {"biofeedback_exercise": 1.0 if status else 0.0})
            res = p.responder_by()
            res[Definition.SEMG] = semg_symmetry(true_abs_ai(p)).responder
            for d, v in res.items():
                if v is not None:
                    evaluable[d] += 1
                    counts[d] += int(v)
        out[status] = {d: counts[d] / evaluable[d] for d in Definition if evaluable[d]}
    return out


def expected_rates(effects: Mapping[str, float] = DEFAULT_EFFECTS, draws: int = 5_000,
                   seed: int = 987_654) -> dict[str, ExpectedRate]:
    """Per course type, the population rate each definition estimates:
    p * P(def | responder) + (1 - p) * P(def | non-responder), p the latent rate."""
    cond = conditional_rates(draws, seed)
    return {t: ExpectedRate(t, float(p), {d: p * cond[True][d] + (1 - p) * cond[False][d] for d in cond[True]})
            for t, p in effects.items()}

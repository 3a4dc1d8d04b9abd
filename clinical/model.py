"""Inputs of the clinical workflow (migration 0014), validated before any write.

One pydantic model per thing a clinic records; the CLI and the clinic API both build
them, so a bad value gets the same clear message everywhere, and the API's OpenAPI
document is generated from them. The database checks the same ranges again
(constraints and triggers of 0014): these models only make the errors readable.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timezone
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mimetic.domain import COURSE_TYPES, ETIOLOGIES, PRO_RANGES, check_pro, pro_score  # noqa: F401

CODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{2,31}$")
MAX_TEXT = 2000

class IntakeError(ValueError):
    """A value the clinical workflow refuses; the message says which and why."""


def explain(exc: ValidationError) -> str:
    """One line per bad field: `field: message` (pydantic's own wording, without its URLs)."""
    parts = []
    for e in exc.errors(include_url=False):
        where = ".".join(str(x) for x in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]
Code = Annotated[str, Field(pattern=CODE_RE.pattern, description="pseudonymous patient code, e.g. P-7F3K2")]
HbGrade = Annotated[int, Field(ge=1, le=6, description="House-Brackmann grade 1-6 (I normal .. VI total palsy)")]
Sunnybrook = Annotated[int, Field(ge=0, le=100, description="Sunnybrook composite 0-100 (100 normal)")]


def _not_future(d: date | None, what: str) -> date | None:
    if d is not None and d > datetime.now(timezone.utc).date():
        raise ValueError(f"{what} {d} is in the future")
    return d


class PatientFields(_In):
    """Clinical attributes of a patient; every one optional (update sets only those given)."""

    etiology: Literal[ETIOLOGIES] | None = Field(None, description="cause of the palsy")  # type: ignore[valid-type]
    affected_side: Literal["L", "R"] | None = Field(None, description="side of the palsy")
    onset_date: date | None = Field(None, description="onset of the palsy")
    baseline_hb_grade: HbGrade | None = None
    baseline_sunnybrook: Sunnybrook | None = None
    full_name: Text | None = Field(None, description="identifying: kept apart, never shown to researchers")
    birth_date: date | None = Field(None, description="identifying")
    contact: Text | None = Field(None, description="identifying: phone or e-mail")

    @field_validator("onset_date", "birth_date")
    @classmethod
    def _past(cls, v: date | None, info) -> date | None:
        return _not_future(v, info.field_name.replace("_", " "))

    @field_validator("affected_side", mode="before")
    @classmethod
    def _side(cls, v: object) -> object:
        return {"left": "L", "right": "R", "l": "L", "r": "R"}.get(v.lower(), v) if isinstance(v, str) else v

    IDENTITY: ClassVar[tuple[str, ...]] = ("full_name", "birth_date", "contact")

    def clinical(self) -> dict[str, object]:
        return {k: v for k, v in self.model_dump(exclude_unset=True).items() if k not in self.IDENTITY}

    def identity(self) -> dict[str, object]:
        return {k: v for k, v in self.model_dump(exclude_unset=True).items() if k in self.IDENTITY}


class PatientIn(PatientFields):
    """A new patient: code and clinic, the clinical fields, consents given at intake."""

    code: Code
    clinic_id: Annotated[str, Field(min_length=1, max_length=64)]
    consent_care: date | None = Field(None, description="date care consent was given")
    consent_research: date | None = Field(None, description="date research consent was given")

    @field_validator("consent_care", "consent_research")
    @classmethod
    def _consent_past(cls, v: date | None) -> date | None:
        return _not_future(v, "consent date")


class CourseIn(_In):
    """A therapy course: type, dates, plan and (microcurrent) the prescribed current limit."""

    therapy_type: Literal[COURSE_TYPES]  # type: ignore[valid-type]
    start_date: date
    end_date: date | None = None
    planned_sessions: int = Field(ge=1, le=1000)
    minutes_per_session: int = Field(ge=1, le=240)
    current_limit_ua: float | None = Field(None, gt=0, le=5000, description="prescribed maximum current µA")
    notes: Text | None = None

    @model_validator(mode="after")
    def _coherent(self) -> "CourseIn":
        if self.end_date is not None and self.end_date < self.start_date:
            raise ValueError(f"end date {self.end_date} is before the start {self.start_date}")
        if self.therapy_type == "microcurrent" and self.current_limit_ua is None:
            raise ValueError("a microcurrent course needs the prescribed current limit (current_limit_ua)")
        if self.therapy_type != "microcurrent" and self.current_limit_ua is not None:
            raise ValueError(f"a {self.therapy_type} course has no current limit (microcurrent only)")
        return self


class AssessmentIn(_In):
    """A clinician's grading: House-Brackmann and/or Sunnybrook (optionally its three components)."""

    assessed_on: date
    assessor: Annotated[str, Field(min_length=1, max_length=200)]
    hb_grade: HbGrade | None = None
    sunnybrook: Sunnybrook | None = None
    sunnybrook_resting: int | None = Field(None, ge=0, le=20, description="resting symmetry score 0-20")
    sunnybrook_voluntary: int | None = Field(None, ge=20, le=100, description="voluntary movement score 20-100")
    sunnybrook_synkinesis: int | None = Field(None, ge=0, le=15, description="synkinesis score 0-15")
    notes: Text | None = None

    @field_validator("assessed_on")
    @classmethod
    def _past(cls, v: date) -> date:
        return _not_future(v, "assessment date")  # type: ignore[return-value]

    @model_validator(mode="after")
    def _coherent(self) -> "AssessmentIn":
        comps = (self.sunnybrook_resting, self.sunnybrook_voluntary, self.sunnybrook_synkinesis)
        given = sum(c is not None for c in comps)
        if given not in (0, 3):
            raise ValueError("give all three Sunnybrook components (resting, voluntary, synkinesis) or none")
        if given == 3:
            composite = self.sunnybrook_voluntary - self.sunnybrook_resting - self.sunnybrook_synkinesis  # type: ignore[operator]
            if self.sunnybrook is None:
                if not 0 <= composite <= 100:
                    raise ValueError(f"Sunnybrook composite from the components is {composite}, outside 0-100")
                object.__setattr__(self, "sunnybrook", composite)
            elif self.sunnybrook != composite:
                raise ValueError(f"Sunnybrook composite {self.sunnybrook} != voluntary - resting - synkinesis "
                                 f"= {composite}")
        if self.hb_grade is None and self.sunnybrook is None:
            raise ValueError("an assessment needs a House-Brackmann grade or a Sunnybrook score")
        return self


class ProIn(_In):
    """A completed patient-reported outcome questionnaire."""

    instrument: Literal["face", "saq", "grc"]
    score: float | None = Field(None, description="total score; computed from the items when omitted")
    item_answers: list[int] | None = Field(None, max_length=100, description="answers in item order")
    answered_at: datetime
    source: Literal["clinic", "app"] = "clinic"

    @field_validator("answered_at")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            v = v.replace(tzinfo=timezone.utc)
        if v > datetime.now(timezone.utc):
            raise ValueError(f"answered_at {v.isoformat()} is in the future")
        return v

    @model_validator(mode="after")
    def _coherent(self) -> "ProIn":
        object.__setattr__(self, "score", check_pro(self.instrument, self.score, self.item_answers))
        return self


class ConsentIn(_In):
    purpose: Literal["care", "research"]
    given_on: date
    document_ref: Annotated[str, Field(max_length=200)] | None = Field(
        None, description="where the signed form is kept (a reference, not the form)")

    @field_validator("given_on")
    @classmethod
    def _past(cls, v: date) -> date:
        return _not_future(v, "consent date")  # type: ignore[return-value]


class AssignmentIn(_In):
    """A device goes to a patient from `valid_from` (until `valid_to`, exclusive, or further notice)."""

    device_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{3,64}$")]
    valid_from: datetime
    valid_to: datetime | None = None

    @field_validator("valid_from", "valid_to")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        return v.replace(tzinfo=timezone.utc) if v is not None and v.tzinfo is None else v

    @model_validator(mode="after")
    def _coherent(self) -> "AssignmentIn":
        if self.valid_to is not None and self.valid_to <= self.valid_from:
            raise ValueError("valid_to must be after valid_from")
        return self


def build(model: type[_In], **values: object) -> _In:
    """The model from keyword values (None = not given), or IntakeError with every bad field."""
    try:
        return model.model_validate({k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        raise IntakeError(explain(exc)) from None

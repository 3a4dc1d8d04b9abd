"""The report's data model, read from the clinic views through one connection.

Reads patient, patient_progress, patient_adherence, session_overview,
session_synkinesis and alert (a clinic login sees only its own patients: the
views are security_invoker and the tables have row-level security). Everything
the pages print is computed here or in `symmetry`, so tests compare these
numbers with the database directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any

import psycopg

from clinical.service import Actor, audit
from dashboards.report.clinical import Clinical, Course, load_clinical
from dashboards.report.symmetry import (Comparison, Point, compare, pct_of_healthy, responder_series,
                                        semg_responder)
from outcomes.definitions import SemgOutcome

#: alert types by what they are about (processors.records.ALERT_TYPES)
PATIENT_REPORTED = ("discomfort", "skin_reaction")
STIMULATION_SAFETY = ("over_current",)
SIGNAL_QUALITY = ("electrode_off", "impedance", "clipping", "mains_noise")
DEVICE_OPERATION = ("battery_low", "device_silent", "data_gap", "sequence_restart")
#: alerts whose samples the session analysis leaves out (migration 0009)
EXCLUDING = SIGNAL_QUALITY + STIMULATION_SAFETY


@dataclass(frozen=True)
class Patient:
    code: str
    etiology: str | None
    affected_side: str | None          # 'L', 'R' or None
    onset_date: date | None
    baseline_hb_grade: int | None
    baseline_sunnybrook: int | None
    planned_sessions: int | None
    planned_minutes: int | None


@dataclass(frozen=True)
class Session:
    number: int                        # 1.. in time order over the patient's finished sessions
    session_id: str
    day: date                          # in the clinic's time zone
    started_at: datetime
    therapy_type: str
    minutes: float | None
    discomfort: int | None             # 0-10 as the patient reported it; None = not reported
    skin_reaction: str | None          # None = not reported, 'none' = reported none
    max_stim_current_ua: float | None


@dataclass(frozen=True)
class Alert:
    alert_id: str
    alert_type: str
    severity: str
    session_number: int
    raised_at: datetime
    channel: int | None
    muscle: str | None                 # from the session's channel map
    value: float | None
    threshold: float | None


@dataclass(frozen=True)
class SynPair:
    """Co-activation of `muscle` while the patient performs `target_task`, per session."""

    target_task: str
    muscle: str
    index: dict[int, float]            # session number -> synkinesis index in [-1, 1]
    flagged: dict[int, bool]
    at_rest: set[int] = field(default_factory=set)   # sessions where neither side rose above rest

    @property
    def peak(self) -> float:
        return max(self.index.values(), default=-math.inf)


@dataclass
class ReportData:
    patient: Patient
    sessions: list[Session]
    muscles: dict[str, list[Point]]                # muscle -> valid points in session order
    unusable: dict[str, dict[int, str]]            # muscle -> session number -> why there is no value
    synkinesis: list[SynPair]                      # pairs with a value in at least one session
    syn_checked: int                               # task x muscle pairs analysed over all sessions
    syn_threshold: float
    adherence: dict[str, Any]
    alerts: list[Alert]
    clinical: Clinical
    generated_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    @property
    def code(self) -> str:
        return self.patient.code

    @property
    def comparison(self) -> Comparison:
        return compare(self.muscles, len(self.sessions))

    @property
    def responder_course(self) -> Course | None:
        """The course the sEMG responder verdict is about: the latest by start date (None: no course)."""
        return max(self.clinical.courses, key=lambda c: (c.start_date, c.course_id), default=None)

    @property
    def responder_series(self) -> dict[str, list[Point]]:
        """Valid points of the sessions the verdict uses: the latest course's, else every session."""
        c = self.responder_course
        return responder_series(self.muscles, {s.number: s.day for s in self.sessions},
                                None if c is None else (c.start_date, c.end_date))

    @property
    def semg(self) -> SemgOutcome:
        """The sEMG responder definition (`outcomes.definitions.semg_symmetry`) on `responder_series`."""
        return semg_responder(self.responder_series)

    def alerts_of(self, *types: str) -> list[Alert]:
        return [a for a in self.alerts if a.alert_type in types]


def rows(conn: psycopg.Connection, sql: str, params: tuple) -> list[dict[str, Any]]:
    cur = conn.execute(sql, params)
    names = [c.name for c in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def load(conn: psycopg.Connection, code: str, actor: Actor, syn_threshold: float = 0.25) -> ReportData:
    """Everything the report shows for one patient, read in one transaction that also appends the
    read to the access audit as a read of the patient for "report" (who, through which channel);
    LookupError if the login cannot see the patient (nothing read, nothing audited)."""
    with conn.transaction():
        return _load(conn, code, actor, syn_threshold)


def _load(conn: psycopg.Connection, code: str, actor: Actor, syn_threshold: float) -> ReportData:
    pat = rows(conn, "select patient_id, clinic_id, code, etiology, affected_side, onset_date, baseline_hb_grade, "
                     "baseline_sunnybrook, planned_sessions, planned_minutes from patient where code = %s", (code,))
    if not pat:
        raise LookupError(f"no patient {code!r} visible to this login")
    audit(conn, actor, "read", "patient", patient_id=pat[0].pop("patient_id"), clinic_id=pat[0].pop("clinic_id"),
          detail="report")
    patient = Patient(**pat[0])
    prog = rows(conn, "select pp.session_number, pp.session_id::text, pp.session_date, pp.started_at, "
                      "pp.therapy_type, pp.minutes, pp.discomfort, pp.skin_reaction, pp.max_stim_current_ua, "
                      "pp.muscle, pp.ai, pp.ratio, m.left_uv, m.right_uv, m.target_task "
                      "from patient_progress pp left join session_muscle_summary m "
                      "  on m.session_id = pp.session_id and m.muscle = pp.muscle "
                      "where pp.patient_code = %s order by pp.session_number, pp.muscle", (code,))
    sessions: dict[int, Session] = {}
    muscles: dict[str, list[Point]] = {}
    state: dict[str, dict[int, tuple[str, str | None]]] = {}
    for r in prog:
        n = r["session_number"]
        if n not in sessions:
            sessions[n] = Session(n, r["session_id"], r["session_date"], r["started_at"], r["therapy_type"],
                                  _f(r["minutes"]), r["discomfort"], r["skin_reaction"],
                                  _f(r["max_stim_current_ua"]))
        if r["muscle"] is None:
            continue
        per = state.setdefault(r["muscle"], {})
        if r["ai"] is None:
            per[n] = ("no_task" if r["left_uv"] is None or r["right_uv"] is None else "inactive", r["target_task"])
            continue
        per[n] = ("ok", r["target_task"])
        ai = float(r["ai"])
        pct = float(r["ratio"]) * 100 if r["ratio"] is not None else pct_of_healthy(ai, patient.affected_side)
        muscles.setdefault(r["muscle"], []).append(Point(n, ai, pct))
    by_id = {s.session_id: s for s in sessions.values()}
    alerts = _alerts(conn, code, by_id)
    unusable = _unusable(state, sessions, alerts)
    syn, syn_checked = _synkinesis(conn, code, by_id)
    adh = rows(conn, "select * from patient_adherence where patient_code = %s", (code,))
    return ReportData(patient, [sessions[k] for k in sorted(sessions)], dict(sorted(muscles.items())), unusable,
                      syn, syn_checked, syn_threshold, adh[0] if adh else {}, alerts, load_clinical(conn, code))


def _alerts(conn: psycopg.Connection, code: str, by_id: dict[str, Session]) -> list[Alert]:
    """Alert episodes open during each finished session (an episode raised in one session and still
    open in the next counts in both, as the session analysis excludes it from both)."""
    found = rows(conn, "select a.alert_id, a.alert_type, a.severity, a.raised_at, a.channel, a.value, "
                       "a.threshold, so.session_id::text as session_id, "
                       "(select x ->> 'muscle' from jsonb_array_elements(so.channel_map) x "
                       "  where (x ->> 'channel')::int = a.channel limit 1) as muscle "
                       "from session_overview so join patient p on p.patient_id = so.patient_id "
                       "join alert a on a.device_id = so.device_id and a.raised_at < coalesce(so.ended_at, now()) "
                       " and coalesce(a.cleared_at, 'infinity') > so.started_at "
                       "where p.code = %s order by a.raised_at, a.alert_type, so.started_at", (code,))
    return [Alert(r["alert_id"], r["alert_type"], r["severity"], by_id[r["session_id"]].number, r["raised_at"],
                  r["channel"], r["muscle"], _f(r["value"]), _f(r["threshold"]))
            for r in found if r["session_id"] in by_id]


def _unusable(levels: dict[str, dict[int, tuple[str, str | None]]],
              sessions: dict[int, Session], alerts: list[Alert]) -> dict[str, dict[int, str]]:
    """Why a muscle has no valid value in a finished session: a fault that excluded its samples
    (migration 0009), its task not recorded, or neither side active above its rest level."""
    out: dict[str, dict[int, str]] = {}
    for m, per in levels.items():
        for n in sessions:
            if n in per and per[n][0] == "ok":
                continue
            faults = sorted({a.alert_type.replace("_", " ") for a in alerts if a.session_number == n and (
                a.alert_type in SIGNAL_QUALITY and a.muscle == m or a.alert_type in STIMULATION_SAFETY)})
            state, task = per.get(n, ("absent", None))
            if faults:
                why = f"excluded: {', '.join(faults)}"
            elif state == "no_task":
                why = f"its task ({(task or 'own task').replace('_', ' ')}) not recorded"
            elif state == "inactive":
                why = "neither side active above rest"
            else:
                why = "not measured"
            out.setdefault(m, {})[n] = why
    return out


def _synkinesis(conn: psycopg.Connection, code: str, by_id: dict[str, Session]) -> tuple[list[SynPair], int]:
    """Pairs (target task, co-activated muscle) with a value in some session, highest first, and the
    number of pairs analysed (an index is null when neither side rose above its rest level)."""
    found = rows(conn, "select x.session_id::text as session_id, x.target_task, x.muscle, x.index, x.flag "
                       "from session_synkinesis x join session_overview so on so.session_id = x.session_id "
                       "join patient p on p.patient_id = so.patient_id where p.code = %s", (code,))
    pairs: dict[tuple[str, str], SynPair] = {}
    checked = 0
    for r in found:
        s = by_id.get(r["session_id"])
        if s is None:
            continue
        checked += 1
        p = pairs.setdefault((r["target_task"], r["muscle"]), SynPair(r["target_task"], r["muscle"], {}, {}))
        if r["index"] is None:
            p.at_rest.add(s.number)
            continue
        p.index[s.number] = float(r["index"])
        p.flagged[s.number] = bool(r["flag"])
    valued = [p for p in pairs.values() if p.index]
    return sorted(valued, key=lambda p: (-p.peak, p.target_task, p.muscle)), checked


def _f(v: Any) -> float | None:
    return None if v is None else float(v)

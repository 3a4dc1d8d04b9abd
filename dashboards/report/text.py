"""The report's sentences: the summary at the top, legends, glossary and caveat.

Every sentence names its measure, what it compares against and which sessions it
uses; colours of the summary bullets have one meaning each (`BULLETS`).
"""

from __future__ import annotations

from dataclasses import dataclass

from dashboards.report.model import (DEVICE_OPERATION, SIGNAL_QUALITY, STIMULATION_SAFETY, ReportData)
from outcomes.definitions import SEMG_END_SESSIONS, SEMG_MIN_IMPROVEMENT
from mimetic.domain import MUSCLES

INK, MUTED, GOOD, WARN, BAD = "#1d2733", "#6b7785", "#2e8b57", "#e08a00", "#c0392b"
BULLETS = ((GOOD, "favourable"), (WARN, "to watch"), (BAD, "needs attention"), (INK, "information"),
           (MUTED, "no change or no data"))
TASK_WORDS = {"brow_raise": "Brow raise", "frown": "Frown", "eye_closure_tight": "Eye closure",
              "eye_closure_gentle": "Gentle eye closure", "smile": "Smile", "snarl": "Snarl", "pucker": "Pucker",
              "lip_depression": "Lip depression", "rest": "Rest", "mvc_calibration": "Maximal effort"}
THERAPY_WORDS = {"microcurrent": "microcurrent", "biofeedback_exercise": "biofeedback exercise",
                 "acupuncture": "acupuncture", "massage": "massage", "assessment": "assessment",
                 "usual_care": "usual care"}
HB_ROMAN = {1: "I", 2: "II", 3: "III", 4: "IV", 5: "V", 6: "VI"}
CHANGE_PP = 5.0   # percentage points of the healthy side: smaller changes read "about the same"

CAVEAT = ("Caveat: these sEMG figures compare the electrical activity of the two sides of the face. An "
          "amplitude ratio is not a validated clinical grade: it depends on electrode placement, skin and "
          "effort, and it is not the House-Brackmann or Sunnybrook grade. Use it beside the clinical "
          "examination, never instead of it.")
GLOSSARY = (
    "Symmetry: the affected side's activation in the muscle's own task (e.g. smile for zygomaticus) in % of "
    "the healthy side, from surface EMG activity levels with the resting level removed; 100 % = both "
    "sides equal. Asymmetry index |AI| = |1 - r| / (1 + r) for that ratio r (0 = symmetric, 1 = one side "
    "silent). A muscle's value is left out for a session when an electrode fault or over-current "
    "affected its measurement, or when neither side was active.",
    "Symmetry first against latest: each muscle's first and latest valid session over all finished "
    "sessions, a description of the change (not the responder criterion).",
    f"sEMG responder (the project's one definition, also used by the clinic dashboard and the outcome "
    f"statistics; a convention, not a clinical standard): over the latest therapy course (every session "
    f"without a course), each muscle with n >= 2 valid sessions compares the mean |AI| of its first and "
    f"last k = min({SEMG_END_SESSIONS}, n / 2) valid sessions; responder when the mean fall over these "
    f"muscles is at least {SEMG_MIN_IMPROVEMENT:.2f}.",
    "Synkinesis index of a muscle during a task it is not meant to perform: (affected - healthy) / "
    "(affected + healthy) of its activity; 0 = equal on both sides, positive = more involuntary "
    "co-activation on the affected side (the synkinesis pattern), negative = more on the healthy side.",
)


@dataclass(frozen=True)
class Line:
    colour: str
    text: str


def plural(n: int | float, word: str) -> str:
    """'1 day', '2 days', '1.5 days'."""
    num = f"{n:.0f}" if float(n).is_integer() else f"{n:.1f}"
    return f"{num} {word}" + ("" if float(n) == 1 else "s")


def minutes(x: float) -> str:
    return f"{x:.1f} min" if x < 10 else f"{x:.0f} min"


def muscle_label(m: str) -> str:
    task = MUSCLES.get(m)
    return f"{TASK_WORDS.get(task, m)} ({m.replace('_', ' ')})" if task else m.replace("_", " ")


def task_word(t: str) -> str:
    return TASK_WORDS.get(t, t.replace("_", " ")).lower()


def session_list(ns: list[int]) -> str:
    ns = sorted(set(ns))
    return ("session " if len(ns) == 1 else "sessions ") + ", ".join(str(n) for n in ns)


def baseline_note(d: ReportData) -> str:
    """Which session each muscle's 'first' value comes from, and why when it is not session 1."""
    later = []
    for mc in d.comparison.muscles:
        n = mc.first.session_number
        if n != 1:
            why = "; ".join(f"session {k}: {r}" for k, r in sorted(d.unusable.get(mc.muscle, {}).items()) if k < n)
            later.append(f"{muscle_label(mc.muscle)} from session {n} ({why})")
    return ("First = session 1 for every muscle." if not later else
            "First = each muscle's first valid session: session 1 except " + "; ".join(later) + ".")


def summary(d: ReportData) -> list[Line]:
    """The plain-language lines at the top of page 1."""
    n = len(d.sessions)
    if not n:
        return ([Line(MUTED, "No finished session yet: no sEMG measurement to report.")] + _clinical_lines(d)
                + ([_adherence_line(d)] if d.clinical.courses else []))
    out: list[Line] = []
    c = d.comparison
    if c.muscles:
        f, last = c.first_pct or 0.0, c.latest_pct or 0.0
        ch = last - f
        word = "improved" if ch >= CHANGE_PP else ("got worse" if ch <= -CHANGE_PP else "is about the same")
        out.append(Line(GOOD if ch >= CHANGE_PP else (BAD if ch <= -CHANGE_PP else MUTED),
                        f"Symmetry {word}: averaged over {plural(len(c.muscles), 'muscle')}, the affected side "
                        f"works at {last:.0f}% of the healthy side in the latest session, against {f:.0f}% in the "
                        f"first ({ch:+.0f} percentage points). {baseline_note(d)}"))
        best = max(c.muscles, key=lambda m: m.change_pct)
        weakest = min(c.muscles, key=lambda m: m.latest.pct)
        lead = "Most progress" if best.change_pct > 0 else "No muscle improved; smallest decline"
        out.append(Line(INK, f"{lead}: {muscle_label(best.muscle)}, {best.first.pct:.0f}% → "
                             f"{best.latest.pct:.0f}%. Weakest now: {muscle_label(weakest.muscle)} at "
                             f"{weakest.latest.pct:.0f}%."))
    elif d.muscles:
        pts = [p[-1].pct for p in d.muscles.values()]
        out.append(Line(INK, f"One valid session per muscle so far: the affected side works at "
                             f"{sum(pts) / len(pts):.0f}% of the healthy side on average."))
    if d.muscles:
        out.append(_responder_line(d))
    out.append(_synkinesis_line(d))
    out += _clinical_lines(d)
    out.append(_adherence_line(d))
    out.append(_comfort_line(d))
    out.append(_device_line(d))
    return out


def _responder_line(d: ReportData) -> Line:
    """The sEMG responder verdict (`ReportData.semg`) with the sessions it is about."""
    course = d.responder_course
    where = ("over every session" if course is None else
             f"over the latest {THERAPY_WORDS.get(course.therapy_type, course.therapy_type)} course "
             f"(from {course.start_date:%d %b %Y})")
    o = d.semg
    if o.responder is None or o.improvement is None:
        return Line(MUTED, f"sEMG responder: not yet evaluable {where} (needs a muscle with two valid sessions).")
    fell = f"fell by {o.improvement:.2f}" if o.improvement >= 0 else f"rose by {-o.improvement:.2f}"
    return Line(GOOD if o.responder else WARN,
                ("sEMG responder rule met" if o.responder else "sEMG responder rule not (yet) met")
                + f" {where}: mean asymmetry |AI| of the first and last (up to {SEMG_END_SESSIONS}) valid "
                  f"sessions of {plural(o.muscles, 'muscle')} {o.first_abs_ai:.2f} → {o.last_abs_ai:.2f}, "
                  f"{fell} (the rule asks a fall of at least {SEMG_MIN_IMPROVEMENT:.2f}).")


def _synkinesis_line(d: ReportData) -> Line:
    flagged = [p for p in d.synkinesis if any(p.flagged.values())]
    if not d.synkinesis and d.syn_checked:
        return Line(GOOD, f"No synkinesis: during each task the other muscles stayed at their resting level on "
                          f"both sides ({plural(d.syn_checked, 'task-muscle pair')} checked over "
                          f"{plural(len(d.sessions), 'session')}).")
    if not d.synkinesis:
        return Line(MUTED, "Synkinesis: not measured (needs the affected side and task recordings).")
    if not flagged:
        return Line(GOOD, f"No synkinesis flagged (index above {d.syn_threshold:.2f} in no session).")
    last = d.sessions[-1].number
    still = any(p.flagged.get(last) for p in flagged)
    parts = [f"{p.muscle.replace('_', ' ')} during {task_word(p.target_task)} in {sum(p.flagged.values())} of "
             f"{plural(len(p.index), 'session')} with a value" for p in flagged[:4]]
    more = f" and {len(flagged) - 4} more pairs" if len(flagged) > 4 else ""
    return Line(BAD if still else WARN,
                f"Synkinesis (involuntary co-activation, index above {d.syn_threshold:.2f}) flagged: "
                + "; ".join(parts) + more
                + ("; present in the latest session." if still else "; not in the latest session."))


def _clinical_lines(d: ReportData) -> list[Line]:
    out = []
    g = d.clinical.grades
    hb = [x for x in g if x.hb_grade is not None]
    sb = [x for x in g if x.sunnybrook is not None]
    bits = []
    if hb:
        bits.append("House-Brackmann " + " → ".join(f"{HB_ROMAN[x.hb_grade]} ({x.assessed_on:%d %b})"
                                                      for x in (hb[0], hb[-1]) if x is not None)
                    if len(hb) > 1 else f"House-Brackmann {HB_ROMAN[hb[0].hb_grade]} ({hb[0].assessed_on:%d %b})")
    if sb:
        bits.append(f"Sunnybrook {sb[0].sunnybrook} → {sb[-1].sunnybrook} of 100" if len(sb) > 1
                    else f"Sunnybrook {sb[0].sunnybrook} of 100")
    if bits:
        better = (len(hb) > 1 and hb[-1].hb_grade < hb[0].hb_grade) or (
            len(sb) > 1 and sb[-1].sunnybrook > sb[0].sunnybrook)
        worse = (len(hb) > 1 and hb[-1].hb_grade > hb[0].hb_grade) or (
            len(sb) > 1 and sb[-1].sunnybrook < sb[0].sunnybrook)
        out.append(Line(GOOD if better and not worse else (BAD if worse else INK),
                        "Clinician grades (first → latest): " + "; ".join(bits)
                        + f" ({plural(len(g), 'assessment')})."))
    else:
        p = d.patient
        base = ", ".join(b for b in (
            f"House-Brackmann {HB_ROMAN[p.baseline_hb_grade]}" if p.baseline_hb_grade else "",
            f"Sunnybrook {p.baseline_sunnybrook} of 100" if p.baseline_sunnybrook is not None else "") if b)
        out.append(Line(MUTED, f"Clinician grades: at intake {base}; no assessment recorded since." if base
                        else "Clinician grades: no assessment recorded."))
    pros = d.clinical.pros_by_instrument()
    if pros:
        parts = []
        for inst, xs in pros.items():
            span = f"{xs[0].score:g} → {xs[-1].score:g}" if len(xs) > 1 else f"{xs[0].score:g}"
            direction = "higher is better" if xs[0].higher_is_better else "lower is better"
            parts.append(f"{_pro_short(inst)} {span} ({xs[0].score_min:g} to {xs[0].score_max:g}, {direction})")
        out.append(Line(INK, "Patient-reported (first → latest): " + "; ".join(parts) + "."))
    else:
        out.append(Line(MUTED, "Patient-reported outcomes: none recorded."))
    return out


def _pro_short(instrument: str) -> str:
    return {"face": "FaCE", "saq": "SAQ", "grc": "global rating of change"}.get(instrument, instrument)


def _adherence_line(d: ReportData) -> Line:
    n = len(d.sessions)
    a = d.adherence
    gap = a.get("mean_days_between")
    longest = a.get("max_days_between")
    rhythm = ((f"; one session every {plural(round(float(gap), 1), 'day')} on average" if gap is not None else "")
              + (f", longest break {plural(round(float(longest), 1), 'day')}" if longest is not None else ""))
    courses = d.clinical.courses
    if courses:
        c = courses[-1]
        kind = THERAPY_WORDS.get(c.therapy_type, c.therapy_type)
        other = sum(1 for s in d.sessions if d.clinical.session_course.get(s.session_id) == c.course_id
                    and s.therapy_type != c.therapy_type)
        ok = c.sessions_done >= 0.8 * c.planned_sessions
        return Line(GOOD if ok else INK,
                    f"Adherence to the {kind} course (from {c.start_date:%d %b %Y}; plan "
                    f"{plural(c.planned_sessions, 'session')} of {minutes(c.minutes_per_session)}): "
                    f"{c.sessions_done} of {c.planned_sessions} {kind} sessions done, "
                    f"{c.sessions_full_length} of them full length (at least 90% of the planned minutes); "
                    f"{minutes(c.total_minutes)} of {minutes(c.planned_sessions * c.minutes_per_session)} "
                    f"planned ({c.minutes_done_pct:.0f}%)"
                    + (f"; {plural(other, 'session')} of another therapy in the same period" if other else "")
                    + rhythm + "." + _earlier_courses(d))
    planned = a.get("planned_sessions")
    mins = a.get("mean_minutes")
    return Line(INK, "Adherence (no course recorded: the patient's plan fields): "
                + (f"{n} of {planned} planned sessions" if planned else f"{plural(n, 'session')}")
                + (f", {minutes(float(mins))} on average" if mins is not None else "")
                + (f" (plan {minutes(float(a['planned_minutes']))})" if a.get("planned_minutes") else "")
                + rhythm + ".")


def _earlier_courses(d: ReportData) -> str:
    earlier = d.clinical.courses[:-1]
    if not earlier:
        return ""
    return " Earlier: " + "; ".join(
        f"{THERAPY_WORDS.get(c.therapy_type, c.therapy_type)} course from {c.start_date:%d %b %Y}, "
        f"{c.sessions_done} of {c.planned_sessions} sessions" for c in earlier) + "."


def _comfort_line(d: ReportData) -> Line:
    n = len(d.sessions)
    disc = [s.discomfort for s in d.sessions if s.discomfort is not None]
    skin = [s for s in d.sessions if s.skin_reaction not in (None, "none")]
    parts = []
    if disc:
        parts.append(f"discomfort {sum(disc) / len(disc):.1f}/10 on average, highest {max(disc)} "
                     f"(reported after {len(disc)} of {plural(n, 'session')})")
    else:
        parts.append("discomfort not reported")
    kinds = ", ".join(sorted({s.skin_reaction or "" for s in skin}))
    parts.append(f"skin reaction after {session_list([s.number for s in skin])} ({kinds})" if skin
                 else "no skin reaction reported")
    serious = (disc and max(disc) >= 7) or len(skin) >= 2
    return Line(BAD if serious else (WARN if skin or (disc and max(disc) >= 4) else GOOD),
                "Patient comfort: " + "; ".join(parts) + ".")


def _device_line(d: ReportData) -> Line:
    oc = d.alerts_of(*STIMULATION_SAFETY)
    sig = d.alerts_of(*SIGNAL_QUALITY)
    dev = d.alerts_of(*DEVICE_OPERATION)
    n_oc, n_sig, n_dev = (len({a.alert_id for a in x}) for x in (oc, sig, dev))
    bits = [(f"{plural(n_oc, 'over-current alert')} ({session_list([a.session_number for a in oc])}; "
             "stimulation safety: check the device and the prescribed limit)" if oc else "no over-current")]
    if sig:
        bits.append(f"{plural(n_sig, 'electrode or signal fault')} ({session_list([a.session_number for a in sig])}:"
                    " the affected muscle's samples are left out of the figures)")
    if dev:
        kinds = sorted({a.alert_type.replace('_', ' ') for a in dev})
        bits.append(f"{plural(n_dev, 'device alert')} ({', '.join(kinds)})")
    return Line(BAD if oc else (WARN if sig else GOOD), "Device and stimulation: " + "; ".join(bits) + ".")

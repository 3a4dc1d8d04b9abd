"""The four dashboards (issue 6): clinic progress, clinic live session, research cohort, operator fleet.

Every panel's SQL reads only what its data source's role may read: the clinic
dashboards the clinic views and tables (row-level security keeps each clinic to its
own rows), the cohort dashboard the `research` schema only, the fleet dashboard the
`ops` schema and the device-health tables. `mimetic dashboards check` runs them all.
"""

from __future__ import annotations

from mimetic.domain import COURSE_TYPES, MUSCLES, THERAPY_TYPES

from .model import (PG_TYPE, Dashboard, Panel, Query, Row, custom_variable, datasource_variable,
                    query_variable)

CLINIC_DS = {"type": PG_TYPE, "uid": "${ds}"}
RESEARCH_DS = {"type": PG_TYPE, "uid": "mimetic-research"}
OPS_DS = {"type": PG_TYPE, "uid": "mimetic-ops"}

MUSCLE_LIST = list(MUSCLES)
THERAPY_LIST = list(THERAPY_TYPES)
COURSE_LIST = list(COURSE_TYPES)

AI_THRESHOLDS = [(None, "green"), (0.1, "yellow"), (0.25, "orange"), (0.5, "red")]
SYN_THRESHOLD = 0.25
# who acknowledged / resolved an alert (the notifier's alert_handling), joinable `using (alert_id)`
HANDLING = "(select alert_id, acknowledged_at, acknowledged_by, resolved_at, resolved_by from alert_handling) h"


def _clinic_variables() -> list[dict]:
    return [
        datasource_variable("ds", "Clinic data source", "/^mimetic-clinic/",
                            "One PostgreSQL data source per clinic, each logged in with that clinic's read-only "
                            "role: row-level security shows only the clinic's own patients."),
        query_variable("clinic", "Clinic", CLINIC_DS,
                       "select clinic_id as __value, name as __text from clinic order by name",
                       "The clinic (only those the data source's login acts for are visible)."),
        query_variable("patient", "Patient", CLINIC_DS,
                       "select p.code as __value, p.code || coalesce(' · ' || i.full_name, '') as __text "
                       "from patient p left join patient_identity i using (patient_id) "
                       "where p.clinic_id = '$clinic' order by p.code",
                       "Patient (pseudonymous code, with the name where the clinic recorded one)."),
        custom_variable("muscle", "Muscle", MUSCLE_LIST, "Muscle pairs to show (left vs right)."),
        custom_variable("therapy", "Therapy", THERAPY_LIST, "Session types to include."),
    ]


# --- clinic: patient progress ----------------------------------------------------------

def clinic_progress() -> Dashboard:
    d = Dashboard(
        uid="mimetic-clinic-progress", title="Clinic · Patient progress",
        description="Per patient: left/right symmetry per muscle across sessions, synkinesis, adherence to the "
                    "therapy plan, comfort and safety.",
        datasource=CLINIC_DS, role="clinic", tags=["mimetic", "clinic"], variables=_clinic_variables(),
        time_from="now-180d")
    where = ("patient_code = '$patient' and muscle in ($muscle) and therapy_type in ($therapy) "
             "and $__timeFilter(started_at)")
    d.add(
        Row("Plan and adherence"),
        Panel("Sessions done", "Finished sessions (ended or timed out) against the number planned for this patient.",
              "stat", [Query("select sessions_done as \"Done\", planned_sessions as \"Planned\" "
                             "from patient_adherence where patient_code = '$patient'", ("Done", "Planned"))],
              w=4, h=5, unit="none", options={"reduceOptions": {"calcs": ["lastNotNull"], "fields": ""},
                                              "textMode": "value_and_name", "colorMode": "none"}),
        Panel("Plan completed", "Finished sessions as a share of the planned course.", "gauge",
              [Query("select plan_done_pct as \"Plan completed\" from patient_adherence "
                     "where patient_code = '$patient'", ("Plan completed",))],
              w=4, h=5, unit="percent", min=0, max=100,
              thresholds=[(None, "red"), (50, "yellow"), (80, "green")]),
        Panel("Minutes of therapy", "Total minutes over all finished sessions, and the mean per session "
              "(the plan asks for the patient's planned minutes per session).", "stat",
              [Query("select total_minutes as \"Total\", mean_minutes as \"Per session\", "
                     "planned_minutes as \"Planned per session\" from patient_adherence "
                     "where patient_code = '$patient'", ("Total", "Per session", "Planned per session"))],
              w=6, h=5, unit="m", options={"textMode": "value_and_name", "colorMode": "none"}),
        Panel("Regularity", "Mean and longest gap between consecutive sessions, and sessions in the last 7 days.",
              "stat", [Query("select mean_days_between as \"Mean gap\", max_days_between as \"Longest gap\", "
                             "sessions_last_7d as \"Last 7 days\" from patient_adherence "
                             "where patient_code = '$patient'", ("Mean gap", "Longest gap", "Last 7 days"))],
              w=5, h=5, unit="d", options={"textMode": "value_and_name", "colorMode": "none"},
              overrides=[{"matcher": {"id": "byName", "options": "Last 7 days"},
                          "properties": [{"id": "unit", "value": "none"}]}]),
        Panel("Responder status", "sEMG responder (outcomes.definitions, as the progress report): over the "
              "latest therapy course (every session without one), each muscle with n >= 2 valid sessions "
              "compares the mean |AI| of its first and last min(3, n/2); responder when the mean fall is at "
              "least 0.10 (a documented convention, not a clinical standard). 'Too early' while no muscle "
              "has 2 valid sessions.", "stat",
              [Query("select case when responder then 'Responder' when not responder then 'Not yet' "
                     "else 'Too early' end as \"Status\", abs_ai_improvement as \"|AI| improvement\" "
                     "from patient_responder where patient_code = '$patient'", ("Status", "|AI| improvement"))],
              w=5, h=5, options={"textMode": "value_and_name", "colorMode": "background",
                                 "reduceOptions": {"calcs": ["lastNotNull"], "fields": "/.*/"}},
              mappings=[{"type": "value", "options": {
                  "Responder": {"color": "green", "index": 0}, "Not yet": {"color": "orange", "index": 1},
                  "Too early": {"color": "blue", "index": 2}}}]),
        Row("Symmetry"),
        Panel("Asymmetry index per muscle", "AI = (L − R)/(L + R) of the mean envelope in the muscle's own task "
              "(smile for zygomaticus, brow raise for frontalis, ...). 0 is symmetric; the sign says which side is "
              "stronger (+ left). Points are sessions.", "timeseries",
              [Query(f"select started_at as time, muscle as metric, ai as value from patient_progress "
                     f"where {where} and ai is not null order by 1", ("time", "metric", "value"), "time_series")],
              w=12, h=9, unit="none", min=-1, max=1, decimals=2,
              custom={"drawStyle": "line", "showPoints": "always", "pointSize": 7, "lineWidth": 2}),
        Panel("Affected / healthy ratio", "Activation of the affected side divided by the healthy side, per "
              "muscle (1 = symmetric; below 1 the affected side is weaker).", "timeseries",
              [Query(f"select started_at as time, muscle as metric, ratio as value from patient_progress "
                     f"where {where} and ratio is not null order by 1", ("time", "metric", "value"), "time_series")],
              w=12, h=9, unit="percentunit", min=0, decimals=0,
              thresholds=[(None, "red"), (0.5, "orange"), (0.8, "green")],
              custom={"drawStyle": "line", "showPoints": "always", "pointSize": 7, "thresholdsStyle":
                      {"mode": "line"}}),
        Panel("Mean |AI| by session number", "Mean absolute asymmetry over the selected muscles, per session in "
              "the course (1 = first session). Lower is better.", "barchart",
              [Query(f"select 'S' || lpad(session_number::text, 2, '0') as \"Session\", "
                     f"round(avg(abs_ai)::numeric, 3) as \"Mean |AI|\" from patient_progress where {where} "
                     f"group by session_number order by session_number", ("Session", "Mean |AI|"))],
              w=12, h=8, unit="none", min=0, max=1, decimals=2, thresholds=AI_THRESHOLDS,
              custom={"fillOpacity": 80}, options={"xField": "Session", "colorByField": "Mean |AI|"}),
        Panel("Synkinesis index", "Involuntary co-activation of each muscle during other muscles' tasks, affected "
              f"vs healthy side (index (A − H)/(A + H)); above {SYN_THRESHOLD} is flagged.", "timeseries",
              [Query(f"select started_at as time, muscle as metric, synkinesis as value from patient_progress "
                     f"where {where} and synkinesis is not null order by 1", ("time", "metric", "value"),
                     "time_series")],
              w=12, h=8, unit="none", min=-1, max=1, decimals=2,
              thresholds=[(None, "green"), (SYN_THRESHOLD, "red")],
              custom={"drawStyle": "line", "showPoints": "always", "pointSize": 7,
                      "thresholdsStyle": {"mode": "line+area"}}),
        Panel("Per session and muscle", "The numbers behind the charts, first session first.", "table",
              [Query(f"select session_number as \"Session\", session_date as \"Date\", therapy_type as \"Therapy\", "
                     f"muscle as \"Muscle\", round(ai::numeric, 3) as \"AI\", round(ratio::numeric, 2) as "
                     f"\"Affected/healthy\", round(synkinesis::numeric, 2) as \"Synkinesis\", synkinesis_flag as "
                     f"\"Synkinesis flagged\" from patient_progress where {where} order by session_number, muscle",
                     ("Session", "Date", "Therapy", "Muscle", "AI", "Affected/healthy", "Synkinesis",
                      "Synkinesis flagged"))],
              w=24, h=9),
        Row("Comfort and safety"),
        Panel("Minutes and discomfort per session", "Session length (bars, minutes) and patient-reported discomfort "
              "(0-10, points; 7 or more raises an alert).", "timeseries",
              [Query("select so.started_at as time, so.minutes as \"Minutes\", so.discomfort as \"Discomfort\" "
                     "from session_overview so join patient p on p.patient_id = so.patient_id "
                     "where p.code = '$patient' and so.therapy_type in ($therapy) and so.status <> 'open' "
                     "and $__timeFilter(so.started_at) order by 1", ("time", "Minutes", "Discomfort"),
                     "time_series")],
              w=12, h=8, unit="m", min=0,
              custom={"drawStyle": "bars", "fillOpacity": 60, "barAlignment": 0},
              overrides=[{"matcher": {"id": "byName", "options": "Discomfort"}, "properties": [
                  {"id": "unit", "value": "none"}, {"id": "max", "value": 10},
                  {"id": "custom.drawStyle", "value": "points"}, {"id": "custom.axisPlacement", "value": "right"},
                  {"id": "custom.pointSize", "value": 9}, {"id": "color", "value": {"mode": "fixed",
                                                                                     "fixedColor": "red"}}]}]),
        Panel("Comfort and safety events", "Sessions with discomfort of 4 or more, a skin reaction, or an alert: "
              "what happened and the highest stimulation current.", "table",
              [Query("select so.started_at as \"Started\", so.therapy_type as \"Therapy\", "
                     "round(so.minutes::numeric, 1) as \"Minutes\", so.discomfort as \"Discomfort\", "
                     "so.skin_reaction as \"Skin reaction\", so.max_stim_current_ua as \"Max current (µA)\", "
                     "so.alerts as \"Alerts\" from session_overview so join patient p on p.patient_id = so.patient_id "
                     "where p.code = '$patient' and $__timeFilter(so.started_at) and (so.discomfort >= 4 or "
                     "coalesce(so.skin_reaction, 'none') <> 'none' or so.alerts > 0) order by 1 desc",
                     ("Started", "Therapy", "Minutes", "Discomfort", "Skin reaction", "Max current (µA)", "Alerts"),
                     may_be_empty=True)],
              w=12, h=8),
        Panel("Alerts during therapy", "Device and safety alerts raised during this patient's sessions "
              "(over-current is critical: stimulation above the prescribed limit), with who acknowledged and "
              "resolved them.", "table",
              [Query("select a.raised_at as \"Raised\", a.alert_type as \"Alert\", a.severity as \"Severity\", "
                     "a.cleared_at as \"Cleared\", h.acknowledged_at as \"Acknowledged\", "
                     "h.acknowledged_by as \"Acknowledged by\", h.resolved_at as \"Resolved\", "
                     "a.message as \"Detail\" from alert a "
                     "left join alert_handling h on h.alert_id = a.alert_id "
                     "join session_overview so on so.session_id = a.session_id "
                     "join patient p on p.patient_id = so.patient_id "
                     "where p.code = '$patient' and $__timeFilter(a.raised_at) order by a.raised_at desc",
                     ("Raised", "Alert", "Severity", "Cleared", "Acknowledged", "Acknowledged by", "Resolved",
                      "Detail"), may_be_empty=True)],
              w=24, h=8,
              overrides=[{"matcher": {"id": "byName", "options": "Severity"}, "properties": [
                  {"id": "custom.cellOptions", "value": {"type": "color-background"}},
                  {"id": "mappings", "value": [{"type": "value", "options": {
                      "critical": {"color": "red", "index": 0}, "warning": {"color": "orange", "index": 1},
                      "info": {"color": "blue", "index": 2}}}]}]}]),
    )
    return d


# --- clinic: live session ---------------------------------------------------------------

def clinic_live() -> Dashboard:
    variables = _clinic_variables()[:3] + [
        query_variable("session", "Session", CLINIC_DS,
                       "select so.session_id::text as __value, to_char(so.started_at, 'YYYY-MM-DD HH24:MI') || ' · ' "
                       "|| so.therapy_type || ' · ' || so.status as __text from session_overview so "
                       "join patient p on p.patient_id = so.patient_id where p.code = '$patient' "
                       "order by so.started_at desc limit 50",
                       "The running session is first (newest first).", refresh=2),
        custom_variable("muscle", "Muscle", MUSCLE_LIST, "Muscle pairs to show (one envelope panel each)."),
    ]
    sess = "session_id = nullif('$session', '')::uuid"
    d = Dashboard(
        uid="mimetic-clinic-live", title="Clinic · Live session",
        description="One session as it runs: left and right envelopes per muscle pair with the task markers, the "
                    "current balance, and signal quality per electrode.",
        datasource=CLINIC_DS, role="clinic", tags=["mimetic", "clinic", "live"], variables=variables,
        time_from="now-15m", refresh="5s",
        annotations=[{
            "name": "Tasks", "enable": True, "hide": False, "iconColor": "#8AB8FF", "datasource": CLINIC_DS,
            "target": {"refId": "Anno", "rawQuery": True, "editorMode": "code", "format": "table",
                       "rawSql": "select time, time_end as timeend, replace(task, '_', ' ') || ' #' || repetition "
                                 "as text, task as tags from task_window where " + sess +
                                 " and $__timeFilter(time) order by time"}}],
        annotation_columns={"Tasks": ("time", "timeend", "text", "tags")})
    d.add(
        Panel("Envelope $muscle: left vs right", "sEMG envelope (moving RMS, µV) of the left and right electrode "
              "of the muscle, averaged per display interval. Shaded regions are the task windows.", "timeseries",
              [Query(f"""
with s as (select channel_map from session_overview where {sess}),
ch as (select (x ->> 'channel')::int + 1 as c, x ->> 'side' as side
       from s cross join lateral jsonb_array_elements(s.channel_map) as x where x ->> 'muscle' in ($muscle))
select $__timeGroupAlias(e.time, $__interval), ch.side as metric, avg(v) as value
from envelope e cross join ch cross join lateral unnest(e.env[ch.c:ch.c][:]) as v
where e.{sess} and $__timeFilter(e.time)
group by 1, 2 order by 1""", ("time", "metric", "value"), "time_series")],
              w=12, h=8, unit="suffix: µV", min=0, repeat="muscle",
              overrides=[{"matcher": {"id": "byName", "options": "L"}, "properties": [
                  {"id": "displayName", "value": "left"}, {"id": "color", "value": {"mode": "fixed",
                                                                                     "fixedColor": "blue"}}]},
                  {"matcher": {"id": "byName", "options": "R"}, "properties": [
                      {"id": "displayName", "value": "right"},
                      {"id": "color", "value": {"mode": "fixed", "fixedColor": "orange"}}]}]),
        Panel("Current balance", "Latest 1-second asymmetry index per muscle pair (AI = (L − R)/(L + R); 0 is "
              "symmetric, + means the left side is stronger).", "bargauge",
              [Query(f"select distinct on (muscle) muscle as \"Muscle\", round(ai::numeric, 3) as \"AI\" "
                     f"from balance where {sess} and window_kind = 'sliding' and muscle in ($muscle) "
                     f"and $__timeFilter(time) order by muscle, time desc", ("Muscle", "AI"))],
              w=6, h=8, unit="none", min=-1, max=1, decimals=2,
              thresholds=[(None, "red"), (-0.5, "orange"), (-0.25, "yellow"), (-0.1, "green"), (0.1, "yellow"),
                          (0.25, "orange"), (0.5, "red")],
              options={"orientation": "horizontal", "displayMode": "lcd",
                       "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": True}}),
        # the live ratio is derived here from the patient's affected side (the clinical record, as the
        # session analysis does), not carried by the device: one source for the side, and a corrected
        # record applies to the rows already stored
        Panel("Current affected / healthy ratio", "Latest 1-second ratio of the affected side's activity to the "
              "healthy side's per muscle pair (1 is symmetric, below 1 the affected side is weaker); the affected "
              "side is the patient's, from the clinical record (empty when it is not recorded).", "bargauge",
              [Query("select distinct on (b.muscle) b.muscle as \"Muscle\", round((case p.affected_side "
                     "when 'L' then b.left_value / nullif(b.right_value, 0) "
                     "when 'R' then b.right_value / nullif(b.left_value, 0) end)::numeric, 2) as \"Ratio\" "
                     "from balance b join session_summary ss on ss.session_id = b.session_id "
                     "join patient p on p.patient_id = ss.patient_id "
                     f"where b.{sess} and b.window_kind = 'sliding' and b.muscle in ($muscle) "
                     "and $__timeFilter(b.time) order by b.muscle, b.time desc", ("Muscle", "Ratio"))],
              w=6, h=8, unit="none", min=0, max=2, decimals=2,
              thresholds=[(None, "red"), (0.5, "orange"), (0.75, "yellow"), (0.9, "green"), (1.11, "yellow"),
                          (1.33, "orange"), (2.0, "red")],
              options={"orientation": "horizontal", "displayMode": "lcd",
                       "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": True}}),
        Panel("Balance over the session", "Asymmetry index per muscle in 1-second windows.", "timeseries",
              [Query(f"select time, muscle as metric, ai as value from balance where {sess} "
                     f"and window_kind = 'sliding' and muscle in ($muscle) and $__timeFilter(time) order by 1",
                     ("time", "metric", "value"), "time_series")],
              w=12, h=8, unit="none", min=-1, max=1, decimals=2),
        Panel("Signal quality per electrode", "Latest quality window per electrode: score (0-1), "
              "signal-to-noise (dB), share of mains hum, clipping and whether the electrode touches the skin.",
              "table",
              [Query(f"select distinct on (channel) coalesce(muscle || ' ' || side, 'channel ' || channel) as "
                     f"\"Electrode\", round(score::numeric, 2) as \"Score\", round(snr_db::numeric, 1) as "
                     f"\"SNR (dB)\", round(mains_ratio::numeric, 3) as \"Mains share\", round(clipping_frac::numeric, "
                     f"3) as \"Clipping\", contact_ok as \"Contact\" from signal_quality where {sess} "
                     f"and $__timeFilter(time) order by channel, time desc",
                     ("Electrode", "Score", "SNR (dB)", "Mains share", "Clipping", "Contact"))],
              w=12, h=9,
              overrides=[{"matcher": {"id": "byName", "options": "Score"}, "properties": [
                  {"id": "custom.cellOptions", "value": {"type": "color-background"}},
                  {"id": "thresholds", "value": {"mode": "absolute", "steps": [
                      {"color": "red", "value": None}, {"color": "orange", "value": 0.5},
                      {"color": "green", "value": 0.8}]}}]}]),
        Panel("Electrode impedance", "Latest electrode-skin impedance per electrode (kΩ) from the device's "
              "telemetry: above 50 kΩ contact is poor, above 1000 kΩ the electrode is off.", "bargauge",
              [Query(f"""
with s as (select device_id, channel_map from session_overview where {sess}),
t as (select tl.impedance_kohm from telemetry tl join s on s.device_id = tl.device_id
      where $__timeFilter(tl.time) and tl.impedance_kohm is not null order by tl.time desc limit 1)
select coalesce(m.label, 'channel ' || (u.i - 1)) as "Electrode", round(u.z::numeric, 1) as "Impedance"
from t cross join lateral unnest(t.impedance_kohm) with ordinality as u(z, i)
left join lateral (select (x ->> 'muscle') || ' ' || (x ->> 'side') as label
                   from s, jsonb_array_elements(s.channel_map) as x
                   where (x ->> 'channel')::int = u.i - 1 limit 1) m on true
order by u.i""", ("Electrode", "Impedance"))],
              w=12, h=9, unit="kohm", min=0, max=100,
              thresholds=[(None, "green"), (50, "orange"), (1000, "red")],
              options={"orientation": "horizontal", "displayMode": "gradient",
                       "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": True}}),
        Panel("Activations", "Detected muscle activations (onset above the rest baseline): peak, duration "
              "and the task they fell in.", "table",
              [Query(f"select onset as \"Onset\", muscle as \"Muscle\", side as \"Side\", round(duration_s::numeric, "
                     f"2) as \"Duration (s)\", round(peak_uv::numeric, 1) as \"Peak (µV)\", task as \"Task\" "
                     f"from activation where {sess} and muscle in ($muscle) and $__timeFilter(onset) "
                     f"order by onset desc limit 200",
                     ("Onset", "Muscle", "Side", "Duration (s)", "Peak (µV)", "Task"))],
              w=12, h=8),
        Panel("Session alerts", "Alerts of this session, newest first (cleared ones show when) and who "
              "acknowledged them.", "table",
              [Query(f"select raised_at as \"Raised\", alert_type as \"Alert\", severity as \"Severity\", "
                     f"cleared_at as \"Cleared\", acknowledged_by as \"Acknowledged by\", "
                     f"message as \"Detail\" from alert left join {HANDLING} using (alert_id) where {sess} "
                     f"order by raised_at desc", ("Raised", "Alert", "Severity", "Cleared", "Acknowledged by",
                                                  "Detail"),
                     may_be_empty=True)],
              w=12, h=8),
    )
    return d


# --- research: cohort ----------------------------------------------------------------------

def research_cohort() -> Dashboard:
    site_filter = "site_id like any (array[$site])"
    variables = [
        query_variable("site", "Site", RESEARCH_DS, "select distinct site_id from research.patient order by 1",
                       "Pseudonymous site (clinic). All = every site.", multi=True, include_all=True,
                       all_value="'%'"),
        custom_variable("therapy", "Course type", COURSE_LIST, "Therapy course types to compare (a patient's "
                        "course, not the therapy of single sessions)."),
        custom_variable("muscle", "Muscle", MUSCLE_LIST, "Muscles included in symmetry figures."),
        custom_variable("n", "After N sessions", ["3", "5", "10", "15", "20"],
                        "Symmetry change from the first session to session N (or the latest one before it).",
                        multi=False, include_all=False, default="10"),
    ]
    d = Dashboard(
        uid="mimetic-research-cohort", title="Research · Cohort outcomes",
        description="De-identified cohort view (research schema only): responder rates by therapy course type and "
                    "definition with 95 % intervals, differences between course types, rates by etiology and "
                    "baseline grade, symmetry change after N sessions with its spread, adherence. No names, "
                    "codes or calendar dates; the time picker does not apply (times are relative).",
        datasource=RESEARCH_DS, role="researcher", tags=["mimetic", "research"], variables=variables,
        time_from="now-1y")
    resp = f"from research.responder where {site_filter} and therapy_type in ($therapy)"
    d.add(
        Panel("Patients", "Patients in the selection, those with an sEMG verdict (evaluable: a muscle with 2 "
              "valid sessions in the latest course) and sEMG responders among them (the per-course "
              "definition; all courses with intervals below).", "stat",
              [Query(f"select count(*) as \"Patients\", count(responder) as \"Evaluable\", "
                     f"count(*) filter (where responder) as \"Responders\" {resp}",
                     ("Patients", "Evaluable", "Responders"))],
              w=8, h=5, options={"textMode": "value_and_name", "colorMode": "none"}),
        Panel("Responder rate", "sEMG responders among evaluable patients, latest course (mean |AI| of the first "
              "and last min(3, n/2) valid sessions per muscle fell by at least 0.10).", "gauge",
              [Query(f"select round(100.0 * avg(responder::int), 1) as \"Responder rate\" {resp} "
                     f"and responder is not null", ("Responder rate",))],
              w=4, h=5, unit="percent", min=0, max=100),
        Panel("Sessions and adherence", "Finished sessions against the plan and minutes per session over the "
              "selected sites.", "stat",
              [Query(f"select sum(sessions_done) as \"Sessions\", round(100.0 * sum(sessions_done) / "
                     f"nullif(sum(planned_sessions), 0), 1) as \"Of plan\", round(avg(mean_minutes), 1) as "
                     f"\"Minutes per session\" from research.adherence where {site_filter}",
                     ("Sessions", "Of plan", "Minutes per session"))],
              w=12, h=5, options={"textMode": "value_and_name", "colorMode": "none"},
              overrides=[{"matcher": {"id": "byName", "options": "Of plan"},
                          "properties": [{"id": "unit", "value": "percent"}]}]),
        Panel("Responder rate by course type and definition", "Per therapy course type (a patient's course, "
              "not the therapy of single sessions) and responder definition: courses, those the definition could "
              "evaluate, responders, rate and its 95 % Wilson interval. sEMG symmetry: per muscle with n >= 2 "
              "valid sessions, mean |AI| of the first min(3, n/2) minus the last min(3, n/2), averaged over "
              "muscles, >= 0.10; clinician grade: House-Brackmann >= 1 grade better or "
              "Sunnybrook >= 10 points; patient-reported: FaCE >= 10 points or global rating of change >= +4. "
              "Research-consenting patients only (`mimetic outcomes --definitions`).", "table",
              [Query(f"""
with g as (
    select definition, therapy_type, count(*) as courses, count(responder) as n,
           count(*) filter (where responder) as r
    from research.course_responder where {site_filter} and therapy_type in ($therapy)
    group by definition, therapy_type
)
select definition as "Definition", therapy_type as "Course type", courses as "Courses", n as "Evaluable",
       r as "Responders", round(100.0 * r / nullif(n, 0), 1) as "Rate %",
       round(100 * research.wilson_low(r, n)::numeric, 1) as "95 % CI low",
       round(100 * research.wilson_high(r, n)::numeric, 1) as "95 % CI high"
from g order by 1, 2""", ("Definition", "Course type", "Courses", "Evaluable", "Responders", "Rate %",
                          "95 % CI low", "95 % CI high"))],
              w=12, h=9),
        Panel("Difference in responder rate between course types", "Rate of course type A minus rate of B, in "
              "percentage points, with its 95 % Newcombe hybrid score interval (an interval that excludes 0 is a "
              "difference the data support at that level), per definition.", "table",
              [Query(f"""
with g as (
    select definition, therapy_type, count(responder) as n, count(*) filter (where responder) as r
    from research.course_responder where {site_filter} and therapy_type in ($therapy)
    group by definition, therapy_type
)
select a.definition as "Definition", a.therapy_type as "A", b.therapy_type as "B",
       round(100.0 * (a.r::numeric / nullif(a.n, 0) - b.r::numeric / nullif(b.n, 0)), 1) as "A - B (points)",
       round(100 * research.newcombe_low(a.r, a.n, b.r, b.n)::numeric, 1) as "95 % CI low",
       round(100 * research.newcombe_high(a.r, a.n, b.r, b.n)::numeric, 1) as "95 % CI high"
from g a join g b on b.definition = a.definition and b.therapy_type > a.therapy_type
order by 1, 2, 3""", ("Definition", "A", "B", "A - B (points)", "95 % CI low", "95 % CI high"))],
              w=12, h=9),
        Panel("Responder rate by etiology", "Share of evaluable patients who responded, per cause of the palsy.",
              "barchart",
              [Query(f"select coalesce(etiology, 'unknown') || ' (n=' || count(*) || ')' as \"Etiology\", "
                     f"round(100.0 * avg(responder::int), 1) as \"Responder rate\" {resp} and responder is not null "
                     f"group by etiology order by etiology", ("Etiology", "Responder rate"))],
              w=8, h=8, unit="percent", min=0, max=100, options={"xField": "Etiology"}),
        Panel("Responder rate by baseline grade", "Share of evaluable patients who responded, per House-Brackmann "
              "grade at baseline (I normal - VI total paralysis).", "barchart",
              [Query(f"select coalesce('HB ' || baseline_hb_grade, 'not graded') || ' (n=' || count(*) || ')' as "
                     f"\"Baseline grade\", round(100.0 * avg(responder::int), 1) as \"Responder rate\" {resp} "
                     f"and responder is not null group by baseline_hb_grade order by baseline_hb_grade nulls last",
                     ("Baseline grade", "Responder rate"))],
              w=8, h=8, unit="percent", min=0, max=100, options={"xField": "Baseline grade"}),
        Panel("Symmetry change after N sessions", "|AI| in session 1 minus |AI| in session N (or the latest "
              "session before N), per therapy and muscle: patients, mean, spread (SD, quartiles). Positive = more "
              "symmetric.", "table",
              [Query(f"""
with sm as (
    select m.research_id, m.muscle, m.session_number, m.abs_ai
    from research.session_muscle m join research.patient p using (research_id)
    where p.{site_filter} and m.muscle in ($muscle) and m.abs_ai is not null and m.session_number <= $n
), per as (
    select research_id, muscle,
           (array_agg(abs_ai order by session_number))[1] as first_abs_ai,
           (array_agg(abs_ai order by session_number desc))[1] as last_abs_ai,
           max(session_number) as at_session
    from sm group by research_id, muscle having count(*) >= 2
)
select r.therapy_type as "Therapy", per.muscle as "Muscle", count(*) as "Patients",
       round(avg(per.at_session), 1) as "Session reached",
       round(avg(per.first_abs_ai - per.last_abs_ai)::numeric, 3) as "Mean change",
       round(stddev_samp(per.first_abs_ai - per.last_abs_ai)::numeric, 3) as "SD",
       round((percentile_cont(0.25) within group (order by per.first_abs_ai - per.last_abs_ai))::numeric, 3) as "Q1",
       round((percentile_cont(0.5) within group (order by per.first_abs_ai - per.last_abs_ai))::numeric, 3) as "Median",
       round((percentile_cont(0.75) within group (order by per.first_abs_ai - per.last_abs_ai))::numeric, 3) as "Q3"
from per join research.responder r using (research_id)
where r.therapy_type in ($therapy)
group by r.therapy_type, per.muscle order by 1, 2""",
                     ("Therapy", "Muscle", "Patients", "Session reached", "Mean change", "SD", "Q1", "Median",
                      "Q3"))],
              w=24, h=9),
        Panel("Mean |AI| by session number and therapy", "Mean absolute asymmetry over patients and the selected "
              "muscles, per session, for each therapy type of the session (patients of the selected course "
              "types).", "barchart",
              [Query("select lpad(session_number::text, 2, '0') as \"Session\", " + ", ".join(
                  f"round((avg(abs_ai) filter (where therapy_type = '{t}'))::numeric, 3) as \"{t}\""
                  for t in THERAPY_LIST) + f" from research.session_muscle where {site_filter} "
                  f"and muscle in ($muscle) and research_id in (select research_id from research.responder "
                  f"where therapy_type in ($therapy)) group by session_number "
                  f"order by session_number", ("Session", *THERAPY_LIST))],
              w=12, h=8, unit="none", min=0, decimals=2, options={"xField": "Session"}),
        Panel("Adherence per patient", "Sessions done against the plan per pseudonymous patient, with minutes "
              "and comfort.", "table",
              [Query(f"select research_id as \"Patient\", site_id as \"Site\", etiology as \"Etiology\", "
                     f"sessions_done as \"Sessions\", planned_sessions as \"Planned\", round(100.0 * sessions_done "
                     f"/ nullif(planned_sessions, 0), 0) as \"Of plan (%)\", mean_minutes as \"Minutes/session\", "
                     f"days_in_programme as \"Days\", mean_discomfort as \"Discomfort\", skin_reactions as "
                     f"\"Skin reactions\" from research.adherence where {site_filter} order by research_id",
                     ("Patient", "Site", "Etiology", "Sessions", "Planned", "Of plan (%)", "Minutes/session", "Days",
                      "Discomfort", "Skin reactions"))],
              w=12, h=8),
    )
    return d


# --- operator: fleet ----------------------------------------------------------------------

def operator_fleet() -> Dashboard:
    clinic_filter = "clinic_id like any (array[$clinic])"
    devices = f"select device_id from ops.device where {clinic_filter}"
    variables = [
        query_variable("clinic", "Clinic", OPS_DS, "select distinct clinic_id from ops.device order by 1",
                       "Clinics whose devices to show. All = the whole fleet.", multi=True, include_all=True,
                       all_value="'%'"),
    ]
    d = Dashboard(
        uid="mimetic-ops-fleet", title="Operator · Fleet and pipeline",
        description="Device faults with raise/clear, battery, electrode impedance, over-current events, silent "
                    "devices and data gaps; pipeline throughput and lag. No patient data.",
        datasource=OPS_DS, role="operator", tags=["mimetic", "ops"], variables=variables, time_from="now-7d",
        refresh="30s")
    sev_override = [{"matcher": {"id": "byName", "options": "Severity"}, "properties": [
        {"id": "custom.cellOptions", "value": {"type": "color-background"}},
        {"id": "mappings", "value": [{"type": "value", "options": {
            "critical": {"color": "red", "index": 0}, "warning": {"color": "orange", "index": 1},
            "info": {"color": "blue", "index": 2}}}]}]}]
    d.add(
        Panel("Active alerts", "Alerts raised and not yet cleared, by severity.", "stat",
              [Query(f"select count(*) filter (where severity = 'critical') as \"Critical\", "
                     f"count(*) filter (where severity = 'warning') as \"Warning\", "
                     f"count(*) filter (where severity = 'info') as \"Info\" from ops.active_alert "
                     f"where device_id in ({devices})", ("Critical", "Warning", "Info"))],
              w=8, h=5, options={"textMode": "value_and_name", "colorMode": "background"},
              thresholds=[(None, "green"), (1, "orange")],
              overrides=[{"matcher": {"id": "byName", "options": "Critical"}, "properties": [
                  {"id": "thresholds", "value": {"mode": "absolute", "steps": [
                      {"color": "green", "value": None}, {"color": "red", "value": 1}]}}]}]),
        Panel("Devices", "Active devices, those heard from in the last 5 minutes, and silent ones (nothing for "
              "over 5 minutes).", "stat",
              [Query(f"select count(*) as \"Active\", count(*) filter (where last_seen_at > now() - interval "
                     f"'5 minutes') as \"Online\", count(*) filter (where last_seen_at is null or last_seen_at <= "
                     f"now() - interval '5 minutes') as \"Silent\" from ops.silent_device where {clinic_filter}",
                     ("Active", "Online", "Silent"))],
              w=8, h=5, options={"textMode": "value_and_name", "colorMode": "none"}),
        Panel("Pipeline now", "Sink throughput over the last 5 minutes (records/s), the highest consumer lag "
              "(records behind) and dead letters in the range.", "stat",
              [Query("select coalesce(sum(records) filter (where time > now() - interval '5 minutes'), 0) / 300.0 "
                     "as \"Records/s\", max(max_lag) filter (where time > now() - interval '5 minutes') as "
                     "\"Lag\", coalesce(sum(dead_letters), 0) as \"Dead letters\" from ops.pipeline_throughput "
                     "where $__timeFilter(time)", ("Records/s", "Lag", "Dead letters"))],
              w=8, h=5, decimals=0, options={"textMode": "value_and_name", "colorMode": "none"}),
        Panel("Active alerts (detail)", "Every alert not yet cleared, most severe and oldest first, with who "
              "acknowledged it.", "table",
              [Query(f"select severity as \"Severity\", alert_type as \"Alert\", device_id as \"Device\", "
                     f"channel as \"Channel\", raised_at as \"Raised\", round(value::numeric, 1) as \"Value\", "
                     f"round(threshold::numeric, 1) as \"Threshold\", acknowledged_by as \"Acknowledged by\", "
                     f"message as \"Detail\" from ops.active_alert "
                     f"where device_id in ({devices}) order by case severity when 'critical' then 0 when "
                     f"'warning' then 1 else 2 end, raised_at",
                     ("Severity", "Alert", "Device", "Channel", "Raised", "Value", "Threshold", "Acknowledged by",
                      "Detail"),
                     may_be_empty=True)],
              w=24, h=8, overrides=sev_override),
        Panel("Alerts raised per type", "Raises per alert type and display interval.", "timeseries",
              [Query(f"select $__timeGroupAlias(time, $__interval), alert_type as metric, count(*) as value "
                     f"from alert_event where state = 'raised' and $__timeFilter(time) and device_id in ({devices}) "
                     f"group by 1, 2 order by 1", ("time", "metric", "value"), "time_series")],
              w=12, h=8, unit="none", min=0, custom={"drawStyle": "bars", "fillOpacity": 70, "stacking":
                                                     {"mode": "normal", "group": "A"}}),
        Panel("Alert history", "Alert episodes in the range: raised, cleared, how long they lasted, who "
              "acknowledged and when they were resolved.", "table",
              [Query(f"select raised_at as \"Raised\", cleared_at as \"Cleared\", round(extract(epoch from "
                     f"coalesce(cleared_at, now()) - raised_at)::numeric, 0) as \"Duration\", severity as "
                     f"\"Severity\", alert_type as \"Alert\", device_id as \"Device\", channel as \"Channel\", "
                     f"acknowledged_by as \"Acknowledged by\", resolved_at as \"Resolved\", "
                     f"message as \"Detail\" from alert left join {HANDLING} using (alert_id) "
                     f"where $__timeFilter(raised_at) and device_id in ({devices}) "
                     f"order by raised_at desc limit 500",
                     ("Raised", "Cleared", "Duration", "Severity", "Alert", "Device", "Channel", "Acknowledged by",
                      "Resolved", "Detail"))],
              w=12, h=8, overrides=sev_override + [{"matcher": {"id": "byName", "options": "Duration"},
                                                    "properties": [{"id": "unit", "value": "s"}]}]),
        Panel("Battery", "Latest battery level per device (warning below 15 %).", "bargauge",
              [Query(f"select device_id as \"Device\", round(battery_pct::numeric, 0) as \"Battery\" "
                     f"from ops.device where {clinic_filter} and battery_pct is not null order by battery_pct",
                     ("Device", "Battery"))],
              w=8, h=9, unit="percent", min=0, max=100, thresholds=[(None, "red"), (15, "orange"), (30, "green")],
              options={"orientation": "horizontal", "displayMode": "gradient",
                       "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": True}}),
        Panel("Impedance per electrode", "Latest electrode-skin impedance per device and electrode (kΩ): above 50 "
              "poor contact or skin trouble, above 1000 the electrode is off.", "table",
              [Query(f"select d.device_id as \"Device\", u.i - 1 as \"Channel\", coalesce((select (x ->> 'muscle') "
                     f"|| ' ' || (x ->> 'side') from jsonb_array_elements(d.channel_map) as x where "
                     f"(x ->> 'channel')::int = u.i - 1 limit 1), '') as \"Electrode\", round(u.z::numeric, 1) as "
                     f"\"Impedance\" from ops.device d cross join lateral unnest(d.impedance_kohm) with ordinality "
                     f"as u(z, i) where d.{clinic_filter} order by u.z desc, 1, 2",
                     ("Device", "Channel", "Electrode", "Impedance"))],
              w=8, h=9, unit="kohm",
              overrides=[{"matcher": {"id": "byName", "options": "Impedance"}, "properties": [
                  {"id": "custom.cellOptions", "value": {"type": "color-background"}},
                  {"id": "thresholds", "value": {"mode": "absolute", "steps": [
                      {"color": "green", "value": None}, {"color": "orange", "value": 50},
                      {"color": "red", "value": 1000}]}}]}]),
        Panel("Silent devices", "Active devices not heard from (telemetry or frames) for over 5 minutes.", "table",
              [Query(f"select device_id as \"Device\", clinic_id as \"Clinic\", last_seen_at as \"Last seen\", "
                     f"round(extract(epoch from now() - last_seen_at)::numeric / 60, 0) as \"Silent for\" "
                     f"from ops.silent_device where {clinic_filter} and (last_seen_at is null or last_seen_at <= "
                     f"now() - interval '5 minutes') order by last_seen_at nulls first",
                     ("Device", "Clinic", "Last seen", "Silent for"), may_be_empty=True)],
              w=8, h=9, overrides=[{"matcher": {"id": "byName", "options": "Silent for"},
                                    "properties": [{"id": "unit", "value": "m"}]}]),
        Panel("Stimulation current and over-current", "Highest stimulation current per device and interval (µA); "
              "over-current alerts are raised above each session's prescribed limit.", "timeseries",
              [Query(f"select $__timeGroupAlias(time, $__interval), device_id as metric, max(stim_current_ua) as "
                     f"value from telemetry where $__timeFilter(time) and stim_current_ua is not null and device_id "
                     f"in ({devices}) group by 1, 2 order by 1", ("time", "metric", "value"), "time_series")],
              w=12, h=8, unit="suffix: µA", min=0),
        Panel("Over-current events", "Every over-current raise: current measured against the limit.", "table",
              [Query(f"select time as \"Time\", device_id as \"Device\", round(value::numeric, 0) as \"Current (µA)\", "
                     f"round(threshold::numeric, 0) as \"Limit (µA)\", state as \"State\" from alert_event "
                     f"where alert_type = 'over_current' and $__timeFilter(time) and device_id in ({devices}) "
                     f"order by time desc", ("Time", "Device", "Current (µA)", "Limit (µA)", "State"),
                     may_be_empty=True)],
              w=12, h=8),
        Panel("Data gaps and duplicates", "Frames lost between device and pipeline, duplicates and late frames, "
              "sequence-counter restarts and records refused for their device clock per display interval (at least "
              "a minute; from the worker's sequence accounting), empty intervals as zero.", "timeseries",
              [Query(f"""
with p as (select make_interval(secs => greatest($__interval_ms, 60000) / 1000.0) as step),
m as (select time_bucket(p.step, time) as t, sum(missing_frames) as missing, sum(duplicates) as dup,
             sum(late) as late, sum(restarts) as restarts, sum(clock_refused) as clock
      from stream_stats cross join p where $__timeFilter(time) and device_id in ({devices}) group by 1)
select g as time, coalesce(m.missing, 0) as "Missing frames", coalesce(m.dup, 0) as "Duplicates",
       coalesce(m.late, 0) as "Late", coalesce(m.restarts, 0) as "Counter restarts",
       coalesce(m.clock, 0) as "Clock refused"
from p cross join generate_series(time_bucket(p.step, $__timeFrom()::timestamptz), $__timeTo()::timestamptz, p.step) as g
left join m on m.t = g order by 1""", ("time", "Missing frames", "Duplicates", "Late", "Counter restarts",
                                       "Clock refused"), "time_series")],
              w=12, h=8, unit="none", min=0, custom={"drawStyle": "bars", "fillOpacity": 70}),
        Panel("Pipeline throughput", "Records the database sink wrote per second, averaged per display interval "
              "(at least a minute); intervals without a batch show zero.", "timeseries",
              [Query("""
with p as (select make_interval(secs => greatest($__interval_ms, 60000) / 1000.0) as step),
b as (select time_bucket(p.step, time) as t, sum(records) as records, sum(rows_written) as rows,
             sum(dead_letters) as dead
      from ops.pipeline_throughput cross join p where $__timeFilter(time) group by 1)
select g as time, coalesce(b.records, 0) / extract(epoch from p.step) as "Records/s",
       coalesce(b.rows, 0) / extract(epoch from p.step) as "Rows/s",
       coalesce(b.dead, 0) / extract(epoch from p.step) as "Dead letters/s"
from p cross join generate_series(time_bucket(p.step, $__timeFrom()::timestamptz), $__timeTo()::timestamptz, p.step) as g
left join b on b.t = g order by 1""", ("time", "Records/s", "Rows/s", "Dead letters/s"), "time_series")],
              w=12, h=8, unit="reqps", min=0),
        Panel("Pipeline lag", "Highest consumer lag of the sink per minute (records behind the partition ends "
              "after a batch).", "timeseries",
              [Query("select time, component as metric, max_lag as value from ops.pipeline_throughput "
                     "where $__timeFilter(time) and max_lag is not null order by 1", ("time", "metric", "value"),
                     "time_series")],
              w=12, h=8, unit="none", min=0, thresholds=[(None, "green"), (10000, "red")],
              custom={"thresholdsStyle": {"mode": "line"}}),
    )
    return d


def all_dashboards() -> list[Dashboard]:
    return [clinic_progress(), clinic_live(), research_cohort(), operator_fleet()]

-- 0016: outcomes by therapy course (issue 14): three responder definitions per course, and
-- responder rates per course type with 95 % Wilson intervals and differences between course
-- types with 95 % Newcombe intervals, for the research dashboard and `mimetic outcomes`.
--
-- A patient is grouped by the TYPE OF THEIR THERAPY COURSE (therapy_course, 0014), not by the
-- most frequent therapy of their sessions. One row per course: a patient with two courses
-- has two rows, each judged on its own sessions and assessments.
--
-- The definitions restate outcomes/definitions.py (documented there, with their references);
-- tests/outcomes/test_outcomes_sql.py keeps the two equal:
--   semg_symmetry     per muscle, the |AI| of the course's finished sessions whose analysis gave
--                     the pair an AI (valid sessions), in time order; with n of them a muscle
--                     counts when n >= 2 and k = min(3, n / 2) are averaged at each end: its
--                     change = mean |AI| of the first k - mean of the last k. Improvement =
--                     mean change over counted muscles; responder when >= 0.10. (The clinic view
--                     patient_responder, migration 0018, applies it to the latest course.)
--   clinician_grade   House-Brackmann gain (baseline - latest) >= 1 grade OR Sunnybrook composite
--                     gain >= 10 points.
--   patient_reported  FaCE total gain >= 10 points OR latest global rating of change >= +4
--                     ("moderately better", -7..+7).
-- Baseline: the latest value on or before the course's start date (for the grades, the patient
-- row's baseline_hb_grade / baseline_sunnybrook when no assessment precedes the course);
-- latest: the last value after the start date and no later than 28 days after the end date
-- (open courses: any later one). Dates in the clinic's time zone. Each scale needs both ends;
-- a definition is null (not evaluable) when none of its scales has both.
--
-- Research views include only patients with research consent in force (app.patient_pseudo).

-- --- the definitions ------------------------------------------------------------------------
create function app.outcome_semg_responder(p_improvement double precision) returns boolean
language sql immutable parallel safe as $$
    select p_improvement >= 0.10 - 1e-12
$$;

create function app.outcome_grade_responder(p_hb0 integer, p_hb1 integer, p_sb0 numeric, p_sb1 numeric)
returns boolean language sql immutable parallel safe as $$
    select case when (p_hb0 is null or p_hb1 is null) and (p_sb0 is null or p_sb1 is null) then null
                else coalesce(p_hb0 - p_hb1 >= 1, false) or coalesce(p_sb1 - p_sb0 >= 10, false) end
$$;

create function app.outcome_pro_responder(p_face0 numeric, p_face1 numeric, p_grc numeric)
returns boolean language sql immutable parallel safe as $$
    select case when (p_face0 is null or p_face1 is null) and p_grc is null then null
                else coalesce(p_face1 - p_face0 >= 10, false) or coalesce(p_grc >= 4, false) end
$$;

-- --- intervals (outcomes/proportions.py) ------------------------------------------------------
-- in the research schema (pure arithmetic, no data) so the research dashboard's panels can compute
-- intervals for any selection of sites and course types
-- Wilson score interval of x/n at 95 % (z = 1.959963984540054), no continuity correction;
-- n = 0 gives [0, 1]
create function research.wilson_low(p_x bigint, p_n bigint) returns double precision
language sql immutable parallel safe as $$
    select case when p_n is null or p_n <= 0 then 0.0
                when p_x <= 0 then 0.0
                else greatest(0.0, (p_x + 1.920729410347062 - 1.959963984540054
                     * sqrt(p_x::float8 * (p_n - p_x) / p_n + 0.960364705173531)) / (p_n + 3.841458820694124)) end
$$;

create function research.wilson_high(p_x bigint, p_n bigint) returns double precision
language sql immutable parallel safe as $$
    select case when p_n is null or p_n <= 0 then 1.0
                when p_x >= p_n then 1.0
                else least(1.0, (p_x + 1.920729410347062 + 1.959963984540054
                     * sqrt(p_x::float8 * (p_n - p_x) / p_n + 0.960364705173531)) / (p_n + 3.841458820694124)) end
$$;

-- Newcombe's hybrid score interval of p1 - p2 (method 10), null when a group is empty
create function research.newcombe_low(p_x1 bigint, p_n1 bigint, p_x2 bigint, p_n2 bigint) returns double precision
language sql immutable parallel safe as $$
    select case when p_n1 > 0 and p_n2 > 0 then greatest(-1.0,
        p_x1::float8 / p_n1 - p_x2::float8 / p_n2
        - sqrt((p_x1::float8 / p_n1 - research.wilson_low(p_x1, p_n1)) ^ 2
               + (research.wilson_high(p_x2, p_n2) - p_x2::float8 / p_n2) ^ 2)) end
$$;

create function research.newcombe_high(p_x1 bigint, p_n1 bigint, p_x2 bigint, p_n2 bigint) returns double precision
language sql immutable parallel safe as $$
    select case when p_n1 > 0 and p_n2 > 0 then least(1.0,
        p_x1::float8 / p_n1 - p_x2::float8 / p_n2
        + sqrt((research.wilson_high(p_x1, p_n1) - p_x1::float8 / p_n1) ^ 2
               + (p_x2::float8 / p_n2 - research.wilson_low(p_x2, p_n2)) ^ 2)) end
$$;

comment on function research.wilson_low(bigint, bigint) is
    '95 % Wilson score interval of x/n, lower end (n = 0: 0).';
comment on function research.wilson_high(bigint, bigint) is
    '95 % Wilson score interval of x/n, upper end (n = 0: 1).';
comment on function research.newcombe_low(bigint, bigint, bigint, bigint) is
    '95 % Newcombe hybrid score interval of x1/n1 - x2/n2, lower end (null when a group is empty).';
comment on function research.newcombe_high(bigint, bigint, bigint, bigint) is
    '95 % Newcombe hybrid score interval of x1/n1 - x2/n2, upper end (null when a group is empty).';
grant execute on function research.wilson_low(bigint, bigint), research.wilson_high(bigint, bigint),
    research.newcombe_low(bigint, bigint, bigint, bigint), research.newcombe_high(bigint, bigint, bigint, bigint)
    to mimetic_researcher, mimetic_clinic;
grant execute on function app.outcome_semg_responder(double precision),
    app.outcome_grade_responder(integer, integer, numeric, numeric),
    app.outcome_pro_responder(numeric, numeric, numeric) to mimetic_researcher, mimetic_clinic;

-- --- per course (owner only: reads every clinic; the research views below gate on consent) ---
-- the course's window in the clinic's dates: sessions [start, end], follow-up (start, end + 28]
create view app.course_window as
select c.course_id, c.patient_id, c.therapy_type, c.start_date, c.end_date, c.planned_sessions,
       c.minutes_per_session, c.current_limit_ua, k.timezone,
       row_number() over (partition by c.patient_id order by c.start_date) as course_number,
       coalesce(c.end_date + 28, 'infinity'::date) as follow_up_until
from therapy_course c
join patient p on p.patient_id = c.patient_id
join clinic k on k.clinic_id = p.clinic_id;

-- per course and muscle: mean |AI| over the first and the last k = min(3, n / 2) of its n valid
-- sessions (outcomes.definitions.semg_end_sessions); a muscle counts with n >= 2
create view app.course_muscle_symmetry as
with s as (
    select w.course_id, m.muscle, abs(m.ai)::float8 as abs_ai,
           row_number() over (partition by w.course_id, m.muscle order by so.started_at, so.session_id) as i,
           count(*) over (partition by w.course_id, m.muscle) as n
    from app.course_window w
    join app.session_base so on so.patient_id = w.patient_id and so.status in ('ended', 'timed_out')
                            and (so.started_at at time zone w.timezone)::date >= w.start_date
                            and (w.end_date is null or (so.started_at at time zone w.timezone)::date <= w.end_date)
    join session_muscle_summary m on m.session_id = so.session_id and m.ai is not null and m.ai <> 'NaN'
)
select course_id, muscle, n as valid_sessions, least(3, n / 2) as end_sessions,
       avg(abs_ai) filter (where i <= least(3, n / 2)) as first_abs_ai,
       avg(abs_ai) filter (where i > n - least(3, n / 2)) as last_abs_ai
from s group by course_id, muscle, n;

-- finished sessions per course (one join, not a scan of the sessions per course)
create view app.course_sessions_done as
select w.course_id, count(*) as sessions_done
from app.course_window w
join app.session_base so on so.patient_id = w.patient_id and so.status in ('ended', 'timed_out')
                        and (so.started_at at time zone w.timezone)::date >= w.start_date
                        and (w.end_date is null or (so.started_at at time zone w.timezone)::date <= w.end_date)
group by w.course_id;

create view app.course_outcome as
select w.course_id, w.patient_id, w.course_number, w.therapy_type, w.planned_sessions, w.minutes_per_session,
       w.current_limit_ua, coalesce(sd.sessions_done, 0) as sessions_done,
       coalesce(sm.muscles, 0) as muscles, sm.first_abs_ai, sm.last_abs_ai, sm.abs_ai_improvement,
       app.outcome_semg_responder(sm.abs_ai_improvement) as semg_responder,
       coalesce(hb0.v, p.baseline_hb_grade) as hb_baseline, hb1.v as hb_latest,
       coalesce(sb0.v, p.baseline_sunnybrook) as sunnybrook_baseline, sb1.v as sunnybrook_latest,
       app.outcome_grade_responder(coalesce(hb0.v, p.baseline_hb_grade), hb1.v,
                                   coalesce(sb0.v, p.baseline_sunnybrook), sb1.v) as grade_responder,
       f0.v as face_baseline, f1.v as face_latest, g1.v as grc_latest,
       app.outcome_pro_responder(f0.v, f1.v, g1.v) as pro_responder
from app.course_window w
join patient p on p.patient_id = w.patient_id
left join app.course_sessions_done sd on sd.course_id = w.course_id
left join (
    select course_id, count(*) as muscles, avg(first_abs_ai) as first_abs_ai, avg(last_abs_ai) as last_abs_ai,
           avg(first_abs_ai - last_abs_ai) as abs_ai_improvement
    from app.course_muscle_symmetry where valid_sessions >= 2 group by course_id) sm on sm.course_id = w.course_id
left join lateral (select a.hb_grade::integer as v from clinical_assessment a
                   where a.patient_id = w.patient_id and a.hb_grade is not null and a.assessed_on <= w.start_date
                   order by a.assessed_on desc, a.assessment_id desc limit 1) hb0 on true
left join lateral (select a.hb_grade::integer as v from clinical_assessment a
                   where a.patient_id = w.patient_id and a.hb_grade is not null and a.assessed_on > w.start_date
                     and a.assessed_on <= w.follow_up_until
                   order by a.assessed_on desc, a.assessment_id desc limit 1) hb1 on true
left join lateral (select a.sunnybrook::numeric as v from clinical_assessment a
                   where a.patient_id = w.patient_id and a.sunnybrook is not null and a.assessed_on <= w.start_date
                   order by a.assessed_on desc, a.assessment_id desc limit 1) sb0 on true
left join lateral (select a.sunnybrook::numeric as v from clinical_assessment a
                   where a.patient_id = w.patient_id and a.sunnybrook is not null and a.assessed_on > w.start_date
                     and a.assessed_on <= w.follow_up_until
                   order by a.assessed_on desc, a.assessment_id desc limit 1) sb1 on true
left join lateral (select r.score as v from patient_reported_outcome r
                   where r.patient_id = w.patient_id and r.instrument = 'face'
                     and (r.answered_at at time zone w.timezone)::date <= w.start_date
                   order by r.answered_at desc limit 1) f0 on true
left join lateral (select r.score as v from patient_reported_outcome r
                   where r.patient_id = w.patient_id and r.instrument = 'face'
                     and (r.answered_at at time zone w.timezone)::date > w.start_date
                     and (r.answered_at at time zone w.timezone)::date <= w.follow_up_until
                   order by r.answered_at desc limit 1) f1 on true
left join lateral (select r.score as v from patient_reported_outcome r
                   where r.patient_id = w.patient_id and r.instrument = 'grc'
                     and (r.answered_at at time zone w.timezone)::date > w.start_date
                     and (r.answered_at at time zone w.timezone)::date <= w.follow_up_until
                   order by r.answered_at desc limit 1) g1 on true;
comment on view app.course_outcome is
    'Per therapy course: sessions, the inputs of the three responder definitions and the verdicts '
    '(null = not evaluable). Owner only; research.course_outcome is the consent-gated, de-identified copy.';

-- --- research (de-identified, consent-gated) ------------------------------------------------
-- (computed once, then joined: inlined, the planner re-ran the per-course lookups for every
-- patient of the consent gate, 300 x 300 loops for 300 courses)
create view research.course_outcome as
with o as materialized (select * from app.course_outcome)
select pp.research_id, pp.site_id, o.course_number, o.therapy_type, o.planned_sessions, o.minutes_per_session,
       o.current_limit_ua, o.sessions_done,
       o.muscles as semg_muscles, round(o.first_abs_ai::numeric, 4) as first_abs_ai,
       round(o.last_abs_ai::numeric, 4) as last_abs_ai, round(o.abs_ai_improvement::numeric, 4) as abs_ai_improvement,
       o.semg_responder, o.hb_baseline, o.hb_latest, o.sunnybrook_baseline, o.sunnybrook_latest, o.grade_responder,
       o.face_baseline, o.face_latest, o.grc_latest, o.pro_responder
from o
join app.patient_pseudo pp on pp.patient_id = o.patient_id;
comment on view research.course_outcome is
    'Per therapy course (research-consenting patients): the inputs and verdicts of the three responder '
    'definitions (semg_symmetry, clinician_grade, patient_reported; null = not evaluable). Definitions: '
    'migration 0016 and outcomes/definitions.py.';

-- one row per course and definition (the unit every rate below counts)
create view research.course_responder as
select o.research_id, o.site_id, o.course_number, o.therapy_type, d.definition, d.responder
from research.course_outcome o
cross join lateral (values ('semg_symmetry', o.semg_responder), ('clinician_grade', o.grade_responder),
                           ('patient_reported', o.pro_responder)) as d(definition, responder);
comment on view research.course_responder is
    'One row per course and responder definition: responder true/false, null when not evaluable.';

create view research.outcome_rate as
with g as (
    select definition, therapy_type, count(*) as courses, count(responder) as n,
           count(*) filter (where responder) as responders
    from research.course_responder group by definition, therapy_type
)
select definition, therapy_type, courses, n, responders,
       round(100.0 * responders / nullif(n, 0), 1) as rate_pct,
       round(100 * research.wilson_low(responders, n)::numeric, 1) as ci_low_pct,
       round(100 * research.wilson_high(responders, n)::numeric, 1) as ci_high_pct
from g;
comment on view research.outcome_rate is
    'Responder rate per definition and course type over every site: courses, evaluable courses (n), '
    'responders, rate and its 95 % Wilson interval, in %.';

create view research.outcome_difference as
with r as materialized (select * from research.outcome_rate)
select a.definition, a.therapy_type as therapy_a, b.therapy_type as therapy_b,
       round(100.0 * (a.responders::numeric / nullif(a.n, 0) - b.responders::numeric / nullif(b.n, 0)), 1)
           as difference_pts,
       round(100 * research.newcombe_low(a.responders, a.n, b.responders, b.n)::numeric, 1) as ci_low_pts,
       round(100 * research.newcombe_high(a.responders, a.n, b.responders, b.n)::numeric, 1) as ci_high_pts
from r a
join r b on b.definition = a.definition and b.therapy_type <> a.therapy_type;
comment on view research.outcome_difference is
    'Difference in responder rate (a - b, percentage points) between two course types for each definition, '
    'with its 95 % Newcombe hybrid score interval; both orders are listed.';

-- research.responder (0007) gave each patient the most frequent therapy of their sessions and its own
-- first-vs-latest responder rule; it now gives the type of the patient's latest therapy course and the
-- sEMG verdict of the one definition (outcomes/definitions.py) as the clinic view patient_responder
-- (0018) does: over the latest course (research.course_outcome), over every finished session for a
-- patient without a course
create or replace view research.responder as
with latest as materialized (
    select distinct on (o.research_id) o.research_id, o.therapy_type, o.sessions_done, o.first_abs_ai,
           o.last_abs_ai, o.abs_ai_improvement, o.semg_responder
    from research.course_outcome o order by o.research_id, o.course_number desc
), free_valid as (
    select sm.research_id, sm.muscle, sm.abs_ai::float8 as abs_ai,
           row_number() over (partition by sm.research_id, sm.muscle order by sm.session_number) as i,
           count(*) over (partition by sm.research_id, sm.muscle) as n
    from research.session_muscle sm
    where sm.abs_ai is not null and sm.abs_ai <> 'NaN'
      and not exists (select 1 from latest l where l.research_id = sm.research_id)
), free as (
    select research_id, avg(first_abs_ai) as first_abs_ai, avg(last_abs_ai) as last_abs_ai,
           avg(first_abs_ai - last_abs_ai) as abs_ai_improvement
    from (select research_id, muscle,
                 avg(abs_ai) filter (where i <= least(3, n / 2)) as first_abs_ai,
                 avg(abs_ai) filter (where i > n - least(3, n / 2)) as last_abs_ai
          from free_valid where n >= 2 group by research_id, muscle, n) per_muscle
    group by research_id
)
select rp.research_id, rp.site_id, rp.etiology, rp.affected_side, rp.baseline_hb_grade, rp.baseline_sunnybrook,
       l.therapy_type, coalesce(l.sessions_done, rp.sessions_done) as sessions,
       round(coalesce(l.first_abs_ai, f.first_abs_ai)::numeric, 3) as first_abs_ai,
       round(coalesce(l.last_abs_ai, f.last_abs_ai)::numeric, 3) as last_abs_ai,
       round(coalesce(l.abs_ai_improvement, f.abs_ai_improvement)::numeric, 3) as abs_ai_improvement,
       case when l.research_id is not null then l.semg_responder
            else app.outcome_semg_responder(f.abs_ai_improvement) end as responder
from research.patient rp
left join latest l on l.research_id = rp.research_id
left join free f on f.research_id = rp.research_id;
comment on view research.responder is
    'Per patient (pseudonymous): cohort attributes, type of the latest therapy course, finished sessions '
    '(of that course), and the sEMG responder definition (outcomes/definitions.py; per muscle with n >= 2 '
    'valid sessions the mean |AI| of the first and last min(3, n/2)) over the latest course, over every '
    'session without a course; null = not evaluable. Per course with intervals: research.course_outcome '
    'and research.outcome_rate.';

grant select on research.course_outcome, research.course_responder, research.outcome_rate,
    research.outcome_difference to mimetic_researcher;

-- 0018: the clinic's responder view (patient_responder, 0007) applies the project's one sEMG
-- responder definition (outcomes/definitions.py semg_symmetry, restated for courses in migration
-- 0016 app.course_muscle_symmetry), so the clinic dashboard's "Responder" stat, the progress report's
-- responder line, the demo table and the outcomes per course agree for every patient.
--
-- Which sessions: the patient's latest therapy course (by start date; its sessions are the finished
-- ones whose start day in the clinic's time zone lies within the course dates, as course_session),
-- or every finished session of a patient without a course. The verdict is about the current course:
-- a patient starting a second course is "too early" again until it has two valid sessions.
-- Per muscle, n valid sessions (the analysis gave the pair an AI); it counts when n >= 2, and
-- k = min(3, n / 2) sessions are averaged at each end; the change is mean |AI| of the first k minus
-- mean |AI| of the last k. first_abs_ai, last_abs_ai and abs_ai_improvement are means over the same
-- counted muscles, so first_abs_ai - last_abs_ai = abs_ai_improvement; responder when it is >= 0.10,
-- null while no muscle counts.
create or replace view patient_responder with (security_invoker = true) as
with latest_course as (
    select distinct on (c.patient_id) c.patient_id, c.course_id, c.start_date, c.end_date
    from therapy_course c
    order by c.patient_id, c.start_date desc, c.course_id desc
), sess as (
    select pp.patient_id, pp.clinic_id, pp.patient_code, lc.course_id, pp.session_number, pp.muscle, pp.ai
    from patient_progress pp
    left join latest_course lc on lc.patient_id = pp.patient_id
    where lc.course_id is null
       or (pp.session_date >= lc.start_date and (lc.end_date is null or pp.session_date <= lc.end_date))
), valid as (
    select s.patient_id, s.muscle, abs(s.ai)::float8 as abs_ai,
           row_number() over (partition by s.patient_id, s.muscle order by s.session_number) as i,
           count(*) over (partition by s.patient_id, s.muscle) as n
    from sess s
    where s.muscle is not null and s.ai is not null and s.ai <> 'NaN'
), per_muscle as (
    select patient_id, muscle,
           avg(abs_ai) filter (where i <= least(3, n / 2)) as first_abs_ai,
           avg(abs_ai) filter (where i > n - least(3, n / 2)) as last_abs_ai
    from valid where n >= 2
    group by patient_id, muscle, n
), per_patient as (
    select patient_id, count(*) as muscles, avg(first_abs_ai) as first_abs_ai, avg(last_abs_ai) as last_abs_ai,
           avg(first_abs_ai - last_abs_ai) as abs_ai_improvement
    from per_muscle group by patient_id
)
select s.patient_id, s.clinic_id, s.patient_code, count(distinct s.session_number) as sessions,
       round(max(pm.first_abs_ai)::numeric, 3) as first_abs_ai,
       round(max(pm.last_abs_ai)::numeric, 3) as last_abs_ai,
       round(max(pm.abs_ai_improvement)::numeric, 3) as abs_ai_improvement,
       max(pm.abs_ai_improvement) >= 0.10 - 1e-12 as responder,
       s.course_id, coalesce(max(pm.muscles), 0) as muscles
from sess s
left join per_patient pm on pm.patient_id = s.patient_id
group by s.patient_id, s.clinic_id, s.patient_code, s.course_id;
comment on view patient_responder is
    'Per patient, over the latest therapy course (course_id; every finished session without a course): '
    'the sEMG responder definition of outcomes/definitions.py. Per muscle with n >= 2 valid sessions, '
    'mean |AI| of the first and last min(3, n/2); means over those muscles and the improvement; responder '
    'when it is >= 0.10 (null while no muscle counts). The progress report prints the same numbers.';

-- 0018: the clinic's responder view (patient_responder, 0007) computes what the progress report
-- prints (dashboards/report/symmetry.py), so the clinic dashboard's "Responder" stat, the report's
-- responder line and the demo table agree for every patient.
--
-- Before, the mean over muscles included muscles with a single valid session (their improvement
-- 0 pulled the mean towards "no change"), while first_abs_ai and last_abs_ai averaged the same
-- rows: for one demo patient the view said |AI| fell by 0.27 where the demo table said
-- 0.58 -> 0.25. Now only muscles with at least two valid sessions (each from its own first valid
-- session to its latest, as patient_outcome gives them) enter the three means, so
-- first_abs_ai - last_abs_ai = abs_ai_improvement. responder is null while no muscle has two
-- valid sessions. patient_outcome itself is unchanged (it still lists every muscle).
create or replace view patient_responder with (security_invoker = true) as
select o.patient_id, o.clinic_id, o.patient_code, max(o.sessions) as sessions,
       round((avg(o.first_abs_ai) filter (where o.sessions >= 2))::numeric, 3) as first_abs_ai,
       round((avg(o.last_abs_ai) filter (where o.sessions >= 2))::numeric, 3) as last_abs_ai,
       round((avg(o.abs_ai_improvement) filter (where o.sessions >= 2))::numeric, 3) as abs_ai_improvement,
       (avg(o.abs_ai_improvement) filter (where o.sessions >= 2)) >= 0.10 - 1e-12 as responder
from patient_outcome o
group by o.patient_id, o.clinic_id, o.patient_code;
comment on view patient_responder is
    'Per patient: mean over the muscles with at least two valid sessions of |AI| in each one''s first '
    'and latest valid session, and the mean improvement; responder when it is >= 0.10 (null while no '
    'muscle has two valid sessions). The progress report prints the same numbers.';

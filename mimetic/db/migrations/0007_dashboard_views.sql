-- 0007: what the dashboards and reports read (issue 6): adherence, outcome and responder
-- status for clinics (row-level security applies: security_invoker views), the same
-- de-identified for researchers, and pipeline throughput/lag for operators.
--
-- Responder (a documented convention, not a clinical standard): a patient whose mean,
-- over muscles, of |AI| in the first finished session minus |AI| in the latest one is
-- at least 0.10, with at least 2 finished sessions. The improvement itself is exposed,
-- so dashboards and analysts can apply another threshold.

-- --- clinic ---------------------------------------------------------------------------------
create view patient_adherence with (security_invoker = true) as
with s as (
    select so.*, lag(so.started_at) over (partition by so.patient_id order by so.started_at) as prev_start
    from session_overview so
    where so.patient_id is not null and so.status in ('ended', 'timed_out')
)
select p.patient_id, p.clinic_id, p.code as patient_code, p.planned_sessions, p.planned_minutes,
       count(s.session_id) as sessions_done,
       count(s.session_id) filter (where s.status = 'timed_out') as sessions_timed_out,
       count(s.session_id) filter (where p.planned_minutes is not null and s.minutes >= p.planned_minutes * 0.9)
           as sessions_full_length,
       round(coalesce(sum(s.minutes), 0)::numeric, 1) as total_minutes,
       round(avg(s.minutes)::numeric, 1) as mean_minutes,
       min(s.started_at) as first_session_at, max(s.started_at) as last_session_at,
       round(avg(extract(epoch from s.started_at - s.prev_start) / 86400)::numeric, 2) as mean_days_between,
       round(max(extract(epoch from s.started_at - s.prev_start) / 86400)::numeric, 2) as max_days_between,
       count(s.session_id) filter (where s.started_at > now() - interval '7 days') as sessions_last_7d,
       count(s.session_id) filter (where s.started_at > now() - interval '28 days') as sessions_last_28d,
       case when p.planned_sessions > 0
            then round(100.0 * count(s.session_id) / p.planned_sessions, 1) end as plan_done_pct,
       round(avg(s.discomfort)::numeric, 1) as mean_discomfort, max(s.discomfort) as max_discomfort,
       count(s.session_id) filter (where s.skin_reaction is not null and s.skin_reaction <> 'none')
           as skin_reactions,
       coalesce(sum(s.alerts), 0) as alerts
from patient p
left join s on s.patient_id = p.patient_id
group by p.patient_id, p.clinic_id, p.code, p.planned_sessions, p.planned_minutes;
comment on view patient_adherence is
    'Per patient: finished sessions against the plan, minutes, regularity (days between sessions), '
    'recent activity, discomfort (0-10), skin reactions and alerts.';

create view patient_outcome with (security_invoker = true) as
with per as (
    select pp.patient_id, pp.clinic_id, pp.patient_code, pp.muscle, pp.session_number, pp.abs_ai, pp.ai,
           pp.synkinesis, pp.synkinesis_flag,
           first_value(pp.abs_ai) over w as first_abs_ai, last_value(pp.abs_ai) over w as last_abs_ai,
           first_value(pp.synkinesis) over w as first_synkinesis,
           last_value(pp.synkinesis) over w as last_synkinesis,
           first_value(pp.session_number) over w as first_session,
           last_value(pp.session_number) over w as last_session,
           count(*) over w as sessions
    from patient_progress pp
    where pp.muscle is not null and pp.ai is not null
    window w as (partition by pp.patient_id, pp.muscle order by pp.session_number
                 rows between unbounded preceding and unbounded following)
)
select distinct on (patient_id, muscle)
       patient_id, clinic_id, patient_code, muscle, sessions, first_session, last_session,
       first_abs_ai, last_abs_ai, (first_abs_ai - last_abs_ai) as abs_ai_improvement,
       first_synkinesis, last_synkinesis
from per order by patient_id, muscle;
comment on view patient_outcome is
    'Per patient and muscle: |AI| in the first and the latest finished session and the improvement '
    '(positive = more symmetric); synkinesis index first and latest.';

create view patient_responder with (security_invoker = true) as
select o.patient_id, o.clinic_id, o.patient_code, max(o.sessions) as sessions,
       round(avg(o.first_abs_ai)::numeric, 3) as first_abs_ai, round(avg(o.last_abs_ai)::numeric, 3) as last_abs_ai,
       round(avg(o.abs_ai_improvement)::numeric, 3) as abs_ai_improvement,
       case when max(o.sessions) < 2 then null else avg(o.abs_ai_improvement) >= 0.10 end as responder
from patient_outcome o
group by o.patient_id, o.clinic_id, o.patient_code;
comment on view patient_responder is
    'Per patient: mean over muscles of |AI| first vs latest session; responder when the mean improvement '
    'is >= 0.10 (null with fewer than 2 finished sessions).';

-- --- research -------------------------------------------------------------------------------
create view research.adherence as
select pp.research_id, pp.site_id, p.etiology, p.baseline_hb_grade, p.planned_sessions, p.planned_minutes,
       count(rs.research_session_id) as sessions_done,
       round(coalesce(sum(rs.minutes), 0)::numeric, 1) as total_minutes,
       round(avg(rs.minutes)::numeric, 1) as mean_minutes,
       max(rs.day_since_first_session) as days_in_programme,
       round(avg(rs.discomfort)::numeric, 1) as mean_discomfort,
       count(*) filter (where rs.skin_reaction is not null and rs.skin_reaction <> 'none') as skin_reactions
from patient p
join app.patient_pseudo pp on pp.patient_id = p.patient_id
left join app.research_session rs on rs.patient_id = p.patient_id
group by pp.research_id, pp.site_id, p.etiology, p.baseline_hb_grade, p.planned_sessions, p.planned_minutes;
comment on view research.adherence is
    'Per patient (pseudonymous): sessions done against the plan, minutes, days in the programme, comfort.';

create view research.responder as
select po.research_id, rp.site_id, rp.etiology, rp.affected_side, rp.baseline_hb_grade, rp.baseline_sunnybrook,
       mode() within group (order by po.therapy_type) as therapy_type,
       max(po.sessions) as sessions,
       round(avg(po.first_abs_ai)::numeric, 3) as first_abs_ai,
       round(avg(po.last_abs_ai)::numeric, 3) as last_abs_ai,
       round(avg(po.abs_ai_improvement)::numeric, 3) as abs_ai_improvement,
       case when max(po.sessions) < 2 then null else avg(po.abs_ai_improvement) >= 0.10 end as responder
from research.patient_outcome po
join research.patient rp on rp.research_id = po.research_id
group by po.research_id, rp.site_id, rp.etiology, rp.affected_side, rp.baseline_hb_grade, rp.baseline_sunnybrook;
comment on view research.responder is
    'Per patient (pseudonymous): cohort attributes, therapy type (most frequent), mean |AI| first vs latest '
    'session over muscles, responder (mean improvement >= 0.10, null with < 2 sessions).';

grant select on patient_adherence, patient_outcome, patient_responder to mimetic_clinic;
grant select on research.adherence, research.responder to mimetic_researcher;

-- --- operator: pipeline throughput and lag (one row per sink batch) ----------------------------
create table pipeline_stats (
    time          timestamptz not null default now(),
    component     text not null,              -- 'sink', ...
    instance      text not null,              -- client id
    records       integer not null,           -- Kafka records in the batch
    rows_written  integer not null,
    duplicates    integer not null,
    dead_letters  integer not null,
    lag           bigint,                     -- records behind the partition ends after the batch
    write_ms      real
);
select create_hypertable('pipeline_stats', by_range('time', interval '1 day'));
create index pipeline_stats_component_idx on pipeline_stats (component, time desc);
comment on table pipeline_stats is 'Sink batches: records, rows, duplicates, dead letters, lag (operator dashboards).';

create view ops.pipeline_throughput as
select time_bucket('1 minute', time) as time, component,
       sum(records) as records, sum(rows_written) as rows_written, sum(duplicates) as duplicates,
       sum(dead_letters) as dead_letters, max(lag) as max_lag, round(avg(write_ms)::numeric, 1) as mean_write_ms,
       count(*) as batches
from pipeline_stats group by 1, 2;
comment on view ops.pipeline_throughput is 'Sink throughput, dead letters and lag per minute.';

create view ops.silent_device as
select d.device_id, d.clinic_id, d.status, greatest(t.last_telemetry, s.last_stats) as last_seen_at
from device d
left join lateral (select max(time) as last_telemetry from telemetry where device_id = d.device_id) t on true
left join lateral (select max(time) as last_stats from stream_stats where device_id = d.device_id) s on true
where d.status = 'active';
comment on view ops.silent_device is
    'Active devices with the last time anything was heard from them (filter on last_seen_at).';

alter table pipeline_stats enable row level security;
create policy operator_read on pipeline_stats for select to mimetic_operator using (true);
create policy ingest_write on pipeline_stats to mimetic_ingest using (true) with check (true);
grant select on pipeline_stats, ops.pipeline_throughput, ops.silent_device to mimetic_operator;
grant insert on pipeline_stats to mimetic_ingest;

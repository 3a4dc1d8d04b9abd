-- 0004: views for the three users.
--   public (security_invoker: row-level security of the caller applies): session_overview,
--          patient_progress, envelope_channel, envelope_sample, active_alert
--   research (de-identified, owned by the owner role, the only thing researchers can read)
--   ops      (fleet and pipeline health for operators; no patient data)

-- --- pseudonyms --------------------------------------------------------------------
-- A per-database random salt (never exported, readable only by the owner) keyed into
-- SHA-256, so research ids are stable across queries and exports but cannot be linked
-- back to patient.code, patient_id or device_id without the salt.
create table app.secret (name text primary key, value text not null);
insert into app.secret values ('pseudonym_salt', gen_random_uuid()::text || gen_random_uuid()::text);

create view app.patient_pseudo as
select p.patient_id,
       'R-' || left(encode(sha256(convert_to(s.value || ':patient:' || p.patient_id, 'UTF8')), 'hex'), 12) as research_id,
       'S-' || left(encode(sha256(convert_to(s.value || ':clinic:' || p.clinic_id, 'UTF8')), 'hex'), 8) as site_id
from patient p cross join app.secret s where s.name = 'pseudonym_salt';


-- --- sessions ------------------------------------------------------------------------
create view session_overview with (security_invoker = true) as
select coalesce(ss.session_id, ts.session_id)            as session_id,
       coalesce(ss.patient_id, ts.patient_id, d.patient_id) as patient_id,
       coalesce(ss.device_id, ts.device_id)              as device_id,
       d.clinic_id,
       coalesce(ss.therapy_type, ts.therapy_type)        as therapy_type,
       coalesce(ss.started_at, ts.started_at)            as started_at,
       coalesce(ss.ended_at, ts.ended_at)                as ended_at,
       coalesce(ss.status, ts.status)                    as status,
       coalesce(ss.minutes, extract(epoch from coalesce(ts.ended_at, now()) - ts.started_at) / 60)::real
                                                         as minutes,
       ss.active_minutes,
       coalesce(ss.discomfort, ts.discomfort)            as discomfort,
       coalesce(ss.skin_reaction, ts.skin_reaction)      as skin_reaction,
       ss.max_stim_current_ua, ss.frames, ss.missing_frames, ss.alerts, ss.tasks,
       coalesce(ts.channel_map, d.channel_map)           as channel_map,
       (ss.session_id is not null)                       as summarized
from session_summary ss
full join therapy_session ts on ts.session_id = ss.session_id
left join device d on d.device_id = coalesce(ss.device_id, ts.device_id);
comment on view session_overview is
    'One row per therapy session (registry row and/or pipeline summary), with its clinic and channel map.';

-- the same for the owner-owned research views (a security_invoker view inside them is checked
-- against the researcher, who must not read the base tables)
create view app.session_base as
select coalesce(ss.session_id, ts.session_id)            as session_id,
       coalesce(ss.patient_id, ts.patient_id, d.patient_id) as patient_id,
       coalesce(ss.device_id, ts.device_id)              as device_id,
       d.clinic_id,
       coalesce(ss.therapy_type, ts.therapy_type)        as therapy_type,
       coalesce(ss.started_at, ts.started_at)            as started_at,
       coalesce(ss.ended_at, ts.ended_at)                as ended_at,
       coalesce(ss.status, ts.status)                    as status,
       coalesce(ss.minutes, extract(epoch from coalesce(ts.ended_at, now()) - ts.started_at) / 60)::real
                                                         as minutes,
       ss.active_minutes,
       coalesce(ss.discomfort, ts.discomfort)            as discomfort,
       coalesce(ss.skin_reaction, ts.skin_reaction)      as skin_reaction,
       ss.max_stim_current_ua, ss.frames, ss.missing_frames, ss.alerts, ss.tasks,
       coalesce(ts.channel_map, d.channel_map)           as channel_map,
       (ss.session_id is not null)                       as summarized
from session_summary ss
full join therapy_session ts on ts.session_id = ss.session_id
left join device d on d.device_id = coalesce(ss.device_id, ts.device_id);

create view patient_progress with (security_invoker = true) as
with numbered as (
    select so.*, row_number() over (partition by so.patient_id order by so.started_at, so.session_id)
               as session_number
    from session_overview so
    where so.patient_id is not null and so.status in ('ended', 'timed_out')
)
select n.patient_id, p.clinic_id, p.code as patient_code, p.affected_side, p.etiology,
       p.planned_sessions, p.planned_minutes,
       n.session_number, n.session_id,
       (n.started_at at time zone coalesce(c.timezone, 'UTC'))::date as session_date,
       n.started_at, n.therapy_type, n.status, n.minutes, n.discomfort, n.skin_reaction,
       n.max_stim_current_ua, n.alerts,
       m.muscle, m.ai, abs(m.ai) as abs_ai, m.ratio, m.left_pct_mvc, m.right_pct_mvc,
       m.synkinesis, m.synkinesis_flag
from numbered n
join patient p on p.patient_id = n.patient_id
left join clinic c on c.clinic_id = p.clinic_id
left join session_muscle_summary m on m.session_id = n.session_id;
comment on view patient_progress is
    'Per patient, session (numbered 1.. in time order, ended or timed out) and muscle: symmetry (ai, '
    'ratio affected/healthy), synkinesis, minutes and discomfort. One row per session with muscle null '
    'when the session has no muscle summary.';

-- --- envelopes per channel and per sample ---------------------------------------------------
create view envelope_channel with (security_invoker = true) as
select e.time, e.device_id, e.session_id, e.seq, (c.ch - 1)::smallint as channel,
       m.muscle, m.side, e.fs_hz,
       array(select unnest(e.env[c.ch:c.ch][:])) as env
from envelope e
cross join lateral generate_subscripts(e.env, 1) as c(ch)
left join therapy_session ts on ts.session_id = e.session_id
left join device d on d.device_id = e.device_id
left join lateral (
    select x ->> 'muscle' as muscle, x ->> 'side' as side
    from jsonb_array_elements(coalesce(ts.channel_map, d.channel_map)) as x
    where (x ->> 'channel')::int = c.ch - 1
    limit 1
) m on true;
comment on view envelope_channel is
    'envelope split per channel with its muscle and side from the session (else device) channel map.';

create view envelope_sample with (security_invoker = true) as
select ec.time + ((s.i - 1) / ec.fs_hz) * interval '1 second' as time,
       ec.device_id, ec.session_id, ec.channel, ec.muscle, ec.side, s.v as envelope_uv
from envelope_channel ec
cross join lateral unnest(ec.env) with ordinality as s(v, i);
comment on view envelope_sample is
    'One row per envelope sample (for plots; filter on time and session_id first).';

create view active_alert with (security_invoker = true) as
select a.*, d.clinic_id
from alert a left join device d on d.device_id = a.device_id
where a.cleared_at is null;
comment on view active_alert is 'Alerts raised and not cleared.';

-- --- research: de-identified -------------------------------------------------------------
-- Researchers see no patient_identity, no patient code, no patient_id, no device id and no
-- absolute dates. Times are relative: days since the patient's onset (day_since_onset) and
-- since their first session, seconds since the session start inside a session.
-- Views are owned by the owner role (not security_invoker): they read across clinics.
create schema research;
comment on schema research is
    'De-identified views for researchers: research_id (stable salted pseudonym per patient), '
    'site_id (per clinic), research_session_id; relative times only.';

create view research.patient as
select pp.research_id, pp.site_id, p.etiology, p.affected_side, p.baseline_hb_grade, p.baseline_sunnybrook,
       p.planned_sessions, p.planned_minutes,
       (select count(*) from session_summary s where s.patient_id = p.patient_id
         and s.status in ('ended', 'timed_out')) as sessions_done,
       (select min(s.started_at)::date from session_summary s where s.patient_id = p.patient_id) - p.onset_date
           as first_session_day_since_onset
from patient p join app.patient_pseudo pp using (patient_id);
comment on view research.patient is
    'One row per patient: cohort attributes (etiology, affected side, baseline House-Brackmann I-VI and '
    'Sunnybrook 0-100, plan) and sessions done. No identifying data; research_id is a salted pseudonym.';

-- internal (owner only): finished sessions with their number in the patient's course
create view app.research_session as
select so.session_id, so.patient_id, 'X-' || left(encode(sha256(convert_to((select value from app.secret where name = 'pseudonym_salt') || ':session:' || so.session_id, 'UTF8')), 'hex'), 16) as research_session_id,
       pp.research_id, pp.site_id,
       row_number() over (partition by so.patient_id order by so.started_at, so.session_id) as session_number,
       so.started_at::date - p.onset_date as day_since_onset,
       so.started_at::date - min(so.started_at::date) over (partition by so.patient_id) as day_since_first_session,
       so.therapy_type, so.status, so.minutes, so.active_minutes, so.discomfort, so.skin_reaction,
       so.max_stim_current_ua, so.frames, so.missing_frames, so.alerts, so.tasks
from app.session_base so
join patient p on p.patient_id = so.patient_id
join app.patient_pseudo pp on pp.patient_id = so.patient_id
where so.status in ('ended', 'timed_out');

create view research.session as
select research_session_id, research_id, site_id, session_number, day_since_onset, day_since_first_session,
       therapy_type, status, minutes, active_minutes, discomfort, skin_reaction, max_stim_current_ua,
       frames, missing_frames, alerts, tasks
from app.research_session;
comment on view research.session is
    'One row per finished session: number in the patient''s course, days since onset and since the first '
    'session (no calendar dates), therapy type, minutes, discomfort (0-10), skin reaction, data completeness.';

create view research.session_muscle as
select rs.research_session_id, rs.research_id, rs.site_id, rs.session_number, rs.day_since_onset,
       rs.therapy_type, m.muscle, m.ai, abs(m.ai) as abs_ai, m.ratio, m.left_pct_mvc, m.right_pct_mvc,
       m.synkinesis, m.synkinesis_flag, m.activations, m.task_windows
from app.research_session rs
join session_muscle_summary m on m.session_id = rs.session_id;
comment on view research.session_muscle is
    'Per finished session and muscle: asymmetry index AI=(L-R)/(L+R), ratio affected/healthy, %MVC per '
    'side, synkinesis (non-target co-activation, affected vs healthy) and its flag.';

create view research.patient_outcome as
with per as (
    select rs.research_id, rs.site_id, rs.session_number, rs.therapy_type, m.muscle, m.synkinesis,
           first_value(abs(m.ai)) over w as first_abs_ai, last_value(abs(m.ai)) over w as last_abs_ai,
           count(*) over w as sessions
    from app.research_session rs
    join session_muscle_summary m on m.session_id = rs.session_id
    where m.ai is not null
    window w as (partition by rs.research_id, m.muscle order by rs.session_number
                 rows between unbounded preceding and unbounded following)
)
select research_id, site_id, muscle, mode() within group (order by therapy_type) as therapy_type,
       max(sessions) as sessions, max(first_abs_ai) as first_abs_ai, max(last_abs_ai) as last_abs_ai,
       max(first_abs_ai) - max(last_abs_ai) as abs_ai_improvement,
       avg(synkinesis) as mean_synkinesis
from per group by research_id, site_id, muscle;
comment on view research.patient_outcome is
    'Per patient and muscle: |AI| in the first and the last finished session and the improvement '
    '(first - last; positive = more symmetric). Responder thresholds are the analyst''s choice.';

create view research.balance as
select 'X-' || left(encode(sha256(convert_to((select value from app.secret where name = 'pseudonym_salt') || ':session:' || b.session_id, 'UTF8')), 'hex'), 16) as research_session_id, pp.research_id,
       extract(epoch from b.time - so.started_at)::real as t_s,
       extract(epoch from b.time_end - so.started_at)::real as t_end_s,
       b.window_kind, b.muscle, b.task, b.repetition, b.left_value, b.right_value, b.ai, b.ratio,
       b.affected_side, b.normalized
from balance b
join app.session_base so on so.session_id = b.session_id
join app.patient_pseudo pp on pp.patient_id = so.patient_id;
comment on view research.balance is
    'Left/right balance windows (sliding, task, repetition); t_s = seconds since the session start.';

create view research.activation as
select 'X-' || left(encode(sha256(convert_to((select value from app.secret where name = 'pseudonym_salt') || ':session:' || a.session_id, 'UTF8')), 'hex'), 16) as research_session_id, pp.research_id,
       extract(epoch from a.onset - so.started_at)::real as onset_s,
       extract(epoch from a.offset_at - so.started_at)::real as offset_s,
       a.duration_s, a.muscle, a.side, (a.side = p.affected_side) as affected,
       a.peak_uv, a.mean_uv, a.area_uv_s, a.peak_pct_mvc, a.task, a.repetition, a.onset_latency_s,
       a.target, a.median_freq_slope_hz_s
from activation a
join app.session_base so on so.session_id = a.session_id
join patient p on p.patient_id = so.patient_id
join app.patient_pseudo pp on pp.patient_id = so.patient_id;
comment on view research.activation is
    'Muscle activations: onset/offset in seconds since the session start, peak/mean (µV, %MVC), area, '
    'task and repetition, whether on the affected side, fatigue slope.';

create view research.envelope as
select 'X-' || left(encode(sha256(convert_to((select value from app.secret where name = 'pseudonym_salt') || ':session:' || e.session_id, 'UTF8')), 'hex'), 16) as research_session_id, pp.research_id,
       extract(epoch from e.time - so.started_at)::double precision as t_s,
       e.fs_hz,
       array(select (x ->> 'muscle') || '_' || (x ->> 'side')
             from jsonb_array_elements(so.channel_map) as x order by (x ->> 'channel')::int) as channels,
       e.env
from envelope e
join app.session_base so on so.session_id = e.session_id
join app.patient_pseudo pp on pp.patient_id = so.patient_id;
comment on view research.envelope is
    'Envelopes (µV) per frame: env[c][s] is channel c (named channels[c], <muscle>_<L|R>) at '
    't_s + (s-1)/fs_hz seconds since the session start. Filter on research_session_id.';

-- --- ops: fleet and pipeline health -------------------------------------------------------
create schema ops;
comment on schema ops is 'Operator views: devices, telemetry, alerts, pipeline health. No patient data.';

create view ops.device as
select d.device_id, d.clinic_id, d.model, d.firmware, d.fs_hz, d.channel_map, d.status, d.created_at,
       d.revoked_at, t.time as last_telemetry_at, t.battery_pct, t.temperature_c, t.impedance_kohm,
       t.stim_current_ua, t.signal_strength_dbm,
       (select max(s.time) from stream_stats s where s.device_id = d.device_id) as last_stats_at
from device d
left join lateral (
    select * from telemetry t where t.device_id = d.device_id order by t.time desc limit 1
) t on true;
comment on view ops.device is 'Devices with their latest telemetry (no patient link, no credential hash).';

create view ops.active_alert as
select alert_id, device_id, alert_type, severity, channel, raised_at, value, threshold, message
from alert where cleared_at is null;
comment on view ops.active_alert is 'Alerts raised and not yet cleared.';

create view ops.pipeline_minute as
select time_bucket('1 minute', time) as time, count(distinct device_id) as devices,
       sum(frames) as frames, sum(samples) as samples, sum(gaps) as gaps,
       sum(missing_frames) as missing_frames, sum(duplicates) as duplicates, sum(late) as late,
       sum(dead_lettered) as dead_lettered
from stream_stats group by 1;
comment on view ops.pipeline_minute is 'Frames, gaps, duplicates, late and dead-lettered frames per minute.';

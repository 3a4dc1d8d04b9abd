-- 0019: %MVC falls back to the patient's most recent calibration (issue 12, item 2).
--
-- The %MVC reference of a muscle (processors/measures/normalisation.py: the healthy side's activity
-- level in the mvc_calibration task, the stronger side's while the affected side is unknown) came
-- only from the session's own calibration; a session without one had no %MVC. Now, when the session
-- has no usable calibration for a muscle, the reference is the one of the patient's latest earlier
-- session that had its own. session_muscle_summary records the reference used (mvc_ref_uv) and the
-- session it came from (mvc_ref_session = session_id for an own calibration), so a reader can tell a
-- borrowed reference from an own one: electrodes are placed anew each session, so a borrowed
-- reference is the less exact of the two and is used only when the session has none.
--
-- app.refresh_session_mvc is a new piece (temp table _mvc), called by refresh_session_summary;
-- refresh_session_summary and refresh_session_activations are replaced to read _mvc (0015's SQL
-- otherwise unchanged). The live worker's %MVC stays null without a calibration in the session
-- (it holds no patient history).

alter table session_muscle_summary
    add column mvc_ref_uv real,
    add column mvc_ref_session uuid;
comment on column session_muscle_summary.mvc_ref_uv is
    '%MVC reference (µV activity level): the healthy side''s level in the calibration of mvc_ref_session.';
comment on column session_muscle_summary.mvc_ref_session is
    'The session whose mvc_calibration gave mvc_ref_uv: this session, or the patient''s latest earlier one '
    'with its own calibration when this session has none (0019).';

create or replace function app.refresh_session_mvc(p_session uuid, p_aff text) returns void
language plpgsql set search_path = pg_catalog, public, app, pg_temp as $$
declare
    v_patient bigint;
    v_started timestamptz;
begin
    create temp table if not exists _mvc (muscle text primary key, ref double precision, ref_session uuid)
        on commit drop;
    truncate _mvc;
    -- the session's own calibration, where it gives a reference
    insert into _mvc
    select muscle, ref, p_session
      from (select muscle, case when p_aff = 'L' then r when p_aff = 'R' then l else greatest(l, r) end as ref
              from _task_mu where task = 'mvc_calibration') c
     where ref > 0;
    -- else the patient's latest earlier session with its own
    select coalesce(ss.patient_id, ts.patient_id, d.patient_id), coalesce(ss.started_at, ts.started_at)
      into v_patient, v_started
      from (select p_session as session_id) k
      left join session_summary ss on ss.session_id = k.session_id
      left join therapy_session ts on ts.session_id = k.session_id
      left join device d on d.device_id = coalesce(ss.device_id, ts.device_id);
    if v_patient is null or v_started is null then
        return;
    end if;
    insert into _mvc
    select distinct on (m.muscle) m.muscle, m.mvc_ref_uv, m.session_id
      from session_muscle_summary m
      join session_summary s on s.session_id = m.session_id
      left join therapy_session ts on ts.session_id = m.session_id
     where coalesce(s.patient_id, ts.patient_id) = v_patient and s.started_at < v_started
       and m.mvc_ref_session = m.session_id and m.mvc_ref_uv > 0
       and m.muscle in (select muscle from _task_mu)
       and m.muscle not in (select muscle from _mvc)
     order by m.muscle, s.started_at desc;
end $$;

create or replace function app.refresh_session_summary(p_session uuid, p_aff text) returns integer
language plpgsql set search_path = pg_catalog, public, app, pg_temp as $$
declare
    v_n integer;
begin
    perform app.refresh_session_mvc(p_session, p_aff);
    -- per-muscle session summary (called only when there is something to compute it from)
    delete from session_muscle_summary where session_id = p_session;
    insert into session_muscle_summary (session_id, muscle, ai, ratio, left_pct_mvc, right_pct_mvc, synkinesis,
                                        synkinesis_flag, activations, task_windows, left_uv, right_uv,
                                        target_task, repetitions, mvc_ref_uv, mvc_ref_session)
    select p_session, m.muscle,
           app.pair_index(own.l, own.r, own.rl, own.rr),
           case when p_aff = 'L' then app.pair_ratio(own.l, own.r, own.rl, own.rr)
                when p_aff = 'R' then app.pair_ratio(own.r, own.l, own.rr, own.rl) end,
           100 * own.l / nullif(mvc.ref, 0), 100 * own.r / nullif(mvc.ref, 0),
           syn.max_index, coalesce(syn.any_flag, false),
           coalesce((select count(*) from activation a where a.session_id = p_session and a.muscle = m.muscle), 0),
           coalesce(own.reps, 0), own.l, own.r, mt.task, own.reps, mvc.ref, mvc.ref_session
    from (select distinct muscle from _task_mu) m
    left join app.muscle_task mt on mt.muscle = m.muscle
    left join _task_mu own on own.muscle = m.muscle and own.task = mt.task
    left join _mvc mvc on mvc.muscle = m.muscle
    left join (select muscle, max(index) as max_index, bool_or(flag) as any_flag
                 from session_synkinesis where session_id = p_session group by muscle) syn
           on syn.muscle = m.muscle;
    get diagnostics v_n = row_count;
    return v_n;
end $$;

create or replace function app.refresh_session_activations(p_session uuid, p_aff text) returns void
language plpgsql set search_path = pg_catalog, public, app, pg_temp as $$
begin
    -- activations: the task repetition whose [time, time_end) holds the onset, where the worker did not
    -- have the markers yet (markers and frames travel unordered), with the latency from the cue and
    -- whether the muscle is that task's own (processors.measures.activation.task_of)
    update activation a
       set task = w.task, repetition = w.repetition,
           onset_latency_s = extract(epoch from a.onset - w.t_start),
           target = coalesce(w.own_task = w.task, false)
      from (select a2.device_id, a2.channel, a2.onset, tw.task, tw.repetition, tw.time as t_start,
                   mt.task as own_task
              from activation a2
              cross join lateral (select t.task, t.repetition, t.time from task_window t
                                   where t.session_id = p_session and t.time <= a2.onset and a2.onset < t.time_end
                                   order by t.time desc limit 1) tw
              left join app.muscle_task mt on mt.muscle = a2.muscle
             where a2.session_id = p_session and a2.task is null) w
     where a.session_id = p_session and a.device_id = w.device_id and a.channel = w.channel
       and a.onset = w.onset;
    -- the peak as %MVC: the peak's activity level over the pair's reference (_mvc, own or borrowed)
    update activation a
       set peak_pct_mvc = 100 * app.activity_level(a.peak_uv::float8 * a.peak_uv,
                                                   case when a.side = 'L' then coalesce(re.l, 0)
                                                        else coalesce(re.r, 0) end) / m.ref
      from _mvc m
      left join _rest re on re.muscle = m.muscle
     where a.session_id = p_session and a.muscle = m.muscle and m.ref > 0;
end $$;

revoke all on function app.refresh_session_mvc(uuid, text) from public;

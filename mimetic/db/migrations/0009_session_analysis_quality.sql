-- 0009: the session analysis (app.refresh_session, 0006) keeps what it cannot recompute and leaves
-- out samples recorded while a muscle's electrode was flagged bad or the stimulation current was
-- over its limit.
--
-- 1. A finished session whose task windows match no envelope samples on a mapped channel (no channel
--    map, or no task markers) had its session_muscle_summary rows deleted and replaced by nothing: a
--    summary the pipeline sent vanished a couple of seconds after it was stored, once the sink's
--    refresh ran. Now the rows are left alone in that case (the session's dirty mark is still cleared).
-- 2. A channel alert (electrode_off, impedance, mains_noise, clipping) means that channel's envelope
--    measures the fault, not the muscle: an electrode drifting to 100 kOhm picks up mains and noise and
--    inflates its side. Measured in the demo (seed 7): one patient's last session read orbicularis oris
--    AI 0.43 and flagged synkinesis where none was injected, with impedance and contact alerts on both
--    of its channels. The function now drops, per muscle, the envelope samples inside any such alert's
--    [raised_at, cleared_at) on either of the muscle's channels (both sides, so left and right still
--    average the same moments), and every muscle's samples inside an over_current episode (stimulation
--    artefacts beyond what the pulse removal is tuned for, on all channels; in the same demo they made
--    frontalis look co-active during pucker). A muscle whose own task was flagged throughout gets no AI
--    (null) rather than a wrong one.

create or replace function app.refresh_session(p_session uuid, p_syn_threshold real default 0.25) returns integer
language plpgsql security definer set search_path = pg_catalog, public, app, pg_temp as $$
declare
    v_device text;
    v_map    jsonb;
    v_aff    text;
    v_n      integer;
begin
    select coalesce(ss.device_id, ts.device_id),
           coalesce(ss.channel_map, ts.channel_map, d.channel_map),
           p.affected_side
      into v_device, v_map, v_aff
      from (select p_session as session_id) k
      left join session_summary ss on ss.session_id = k.session_id
      left join therapy_session ts on ts.session_id = k.session_id
      left join device d on d.device_id = coalesce(ss.device_id, ts.device_id)
      left join patient p on p.patient_id = coalesce(ss.patient_id, ts.patient_id, d.patient_id);
    if v_device is null then
        return 0;
    end if;

    -- per task window and channel: sum and count of the envelope samples inside [time, time_end)
    create temp table if not exists _win_ch (
        task text, repetition integer, w_start timestamptz, w_end timestamptz,
        muscle text, side text, s double precision, n bigint
    ) on commit drop;
    truncate _win_ch;
    -- per muscle, the stretches where either of its electrodes was flagged by a channel alert
    -- (contact lost, impedance out of range, mains pickup, clipping): their samples are left out on
    -- both sides, so the pair's means still come from the same moments
    create temp table if not exists _bad (muscle text, t0 timestamptz, t1 timestamptz) on commit drop;
    truncate _bad;
    -- (muscle null: every muscle, for an over-current episode, whose stimulation artefacts reach all channels)
    insert into _bad
    select cm.muscle, a.raised_at, coalesce(a.cleared_at, 'infinity')
    from alert a
    left join (select (x ->> 'channel')::int as channel, x ->> 'muscle' as muscle
                 from jsonb_array_elements(coalesce(v_map, '[]'::jsonb)) as x) cm on cm.channel = a.channel
    where a.device_id = v_device
      and (a.alert_type in ('electrode_off', 'impedance', 'mains_noise', 'clipping') and cm.muscle is not null
           or a.alert_type = 'over_current')
      -- any alert open during the session's task windows (it may have been raised in an earlier session)
      and a.raised_at < (select max(time_end) from task_window where session_id = p_session)
      and coalesce(a.cleared_at, 'infinity') > (select min(time) from task_window where session_id = p_session);
    insert into _win_ch
    select tw.task, tw.repetition, tw.time, tw.time_end, cm.muscle, cm.side, sum(u.v), count(*)
    from task_window tw
    join envelope e on e.device_id = v_device
                   and e.time >= tw.time - interval '2 seconds' and e.time < tw.time_end
    cross join lateral generate_subscripts(e.env, 1) as c(ch)
    cross join lateral unnest(e.env[c.ch:c.ch][:]) with ordinality as u(v, i)
    join (select (x ->> 'channel')::int as channel, x ->> 'muscle' as muscle, x ->> 'side' as side
            from jsonb_array_elements(coalesce(v_map, '[]'::jsonb)) as x) cm on cm.channel = c.ch - 1
    where tw.session_id = p_session
      and e.time + ((u.i - 1) / e.fs_hz) * interval '1 second' >= tw.time
      and e.time + ((u.i - 1) / e.fs_hz) * interval '1 second' < tw.time_end
      and not exists (select 1 from _bad b
                      where (b.muscle = cm.muscle or b.muscle is null)
                        and e.time + ((u.i - 1) / e.fs_hz) * interval '1 second' >= b.t0
                        and e.time + ((u.i - 1) / e.fs_hz) * interval '1 second' < b.t1)
    group by 1, 2, 3, 4, 5, 6;

    -- balance per repetition and per task (pooled), for every muscle with both sides
    insert into balance as b (time, time_end, device_id, session_id, window_kind, muscle, task, repetition,
                              left_value, right_value, ai, ratio, affected_side, normalized)
    select w_start, w_end, v_device, p_session, 'repetition', muscle, task, repetition, l, r,
           case when l + r > 0 then (l - r) / (l + r) else 0 end,
           case when v_aff = 'L' and r > 0 then l / r when v_aff = 'R' and l > 0 then r / l end,
           v_aff, false
    from (select task, repetition, w_start, w_end, muscle,
                 sum(s) filter (where side = 'L') / nullif(sum(n) filter (where side = 'L'), 0) as l,
                 sum(s) filter (where side = 'R') / nullif(sum(n) filter (where side = 'R'), 0) as r
          from _win_ch group by 1, 2, 3, 4, 5) x
    where l is not null and r is not null
    on conflict (device_id, muscle, window_kind, time) do update
        set time_end = excluded.time_end, session_id = excluded.session_id, task = excluded.task,
            repetition = excluded.repetition, left_value = excluded.left_value,
            right_value = excluded.right_value, ai = excluded.ai, ratio = excluded.ratio,
            affected_side = excluded.affected_side;

    create temp table if not exists _task_mu (
        task text, muscle text, t0 timestamptz, t1 timestamptz, reps integer, l double precision,
        r double precision
    ) on commit drop;
    truncate _task_mu;
    insert into _task_mu
    select task, muscle, min(w_start), max(w_end), count(distinct repetition),
           sum(s) filter (where side = 'L') / nullif(sum(n) filter (where side = 'L'), 0),
           sum(s) filter (where side = 'R') / nullif(sum(n) filter (where side = 'R'), 0)
    from _win_ch group by 1, 2;

    insert into balance as b (time, time_end, device_id, session_id, window_kind, muscle, task, repetition,
                              left_value, right_value, ai, ratio, affected_side, normalized)
    select t0, t1, v_device, p_session, 'task', muscle, task, null, l, r,
           case when l + r > 0 then (l - r) / (l + r) else 0 end,
           case when v_aff = 'L' and r > 0 then l / r when v_aff = 'R' and l > 0 then r / l end,
           v_aff, false
    from _task_mu where l is not null and r is not null
    on conflict (device_id, muscle, window_kind, time) do update
        set time_end = excluded.time_end, session_id = excluded.session_id, task = excluded.task,
            left_value = excluded.left_value, right_value = excluded.right_value, ai = excluded.ai,
            ratio = excluded.ratio, affected_side = excluded.affected_side;

    -- synkinesis: non-target muscles inside each target task (rest and calibration excluded)
    delete from session_synkinesis where session_id = p_session;
    insert into session_synkinesis (session_id, target_task, muscle, affected_uv, healthy_uv, index, flag)
    select p_session, t.task, t.muscle, a.aff, a.hea,
           case when a.aff + a.hea > 0 then (a.aff - a.hea) / (a.aff + a.hea) end,
           coalesce(a.aff + a.hea > 0 and (a.aff - a.hea) / (a.aff + a.hea) > p_syn_threshold, false)
    from _task_mu t
    join app.muscle_task mt on mt.muscle = t.muscle
    cross join lateral (select case when v_aff = 'L' then t.l else t.r end as aff,
                               case when v_aff = 'L' then t.r else t.l end as hea) a
    where v_aff is not null and t.task <> mt.task and t.task not in ('rest', 'mvc_calibration')
      and t.l is not null and t.r is not null;

    -- per-muscle session summary: replaces what the pipeline sent only when there is
    -- something to compute it from (task windows with envelope samples on mapped channels)
    if not exists (select 1 from _task_mu) then
        delete from app.session_dirty where session_id = p_session;
        return 0;
    end if;
    delete from session_muscle_summary where session_id = p_session;
    insert into session_muscle_summary (session_id, muscle, ai, ratio, left_pct_mvc, right_pct_mvc, synkinesis,
                                        synkinesis_flag, activations, task_windows, left_uv, right_uv,
                                        target_task, repetitions)
    select p_session, m.muscle,
           case when own.l + own.r > 0 then (own.l - own.r) / (own.l + own.r) end,
           case when v_aff = 'L' and own.r > 0 then own.l / own.r
                when v_aff = 'R' and own.l > 0 then own.r / own.l end,
           null, null,
           syn.max_index, coalesce(syn.any_flag, false),
           coalesce((select count(*) from activation a where a.session_id = p_session and a.muscle = m.muscle), 0),
           coalesce(own.reps, 0), own.l, own.r, mt.task, own.reps
    from (select distinct muscle from _task_mu) m
    left join app.muscle_task mt on mt.muscle = m.muscle
    left join _task_mu own on own.muscle = m.muscle and own.task = mt.task
    left join (select muscle, max(index) as max_index, bool_or(flag) as any_flag
                 from session_synkinesis where session_id = p_session group by muscle) syn
           on syn.muscle = m.muscle;
    get diagnostics v_n = row_count;

    delete from app.session_dirty where session_id = p_session;
    return v_n;
end $$;

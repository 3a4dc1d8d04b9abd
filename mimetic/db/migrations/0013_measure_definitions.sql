-- 0013: the session analysis (app.refresh_session) uses the one definition of the clinical
-- measures (processors/measures, documented there), so the database, the worker, the offline tools
-- and the simulator's truth mean the same thing by AI, ratio and synkinesis:
--
--   activity level  A = sqrt(max(mean(e^2) - r^2, 0)) of a channel over a window, e the envelope
--                   samples, r the channel's rest level: sqrt(mean(e^2)) over the session's `rest`
--                   task windows (0 when the session has no rest task: raw RMS amplitude).
--                   Before: the plain mean of the envelope, rest included.
--   active pair     at least one side with A > r; AI, ratio and synkinesis are null otherwise
--                   (before: AI 0 for a silent pair, i.e. "symmetric").
--   AI              (L - R) / (L + R) of the levels; ratio = affected / healthy.
--   synkinesis      (A_aff - A_healthy) / (A_aff + A_healthy) of the non-target muscle over the
--                   target task's windows, same gate; flagged above p_syn_threshold.
--   %MVC            left_pct_mvc / right_pct_mvc (before: always null): 100 * A / A_ref, A_ref the
--                   HEALTHY side's level over the session's `mvc_calibration` windows (the stronger
--                   side's when the affected side is unknown), one reference for both sides so the
--                   asymmetry survives normalisation.
--   activations   task / repetition / onset_latency_s / target filled where the worker had no task
--                 window yet (the window holding the onset); peak_pct_mvc = 100 * A(peak) / A_ref.
-- balance.left_value / right_value and session_muscle_summary.left_uv / right_uv hold the levels A.
-- tests/storage/test_measures_sql.py recomputes a session with the Python definitions and compares.

-- the activity level A (µV) from a mean square (µV^2) and a rest level (µV), as
-- processors.measures.balance.activity_level_uv (equal powers within 1e-9 give 0)
create or replace function app.activity_level(p_ms double precision, p_rest double precision)
returns double precision language sql immutable parallel safe as $f$
    select case when p_ms is null then null
                when p_ms - coalesce(p_rest, 0)^2 > 1e-9 * greatest(p_ms, coalesce(p_rest, 0)^2)
                then sqrt(p_ms - coalesce(p_rest, 0)^2) else 0 end
$f$;

-- (a - b) / (a + b) of two levels when the pair is active (a side above its rest level), else null:
-- the asymmetry index (a = left) and the synkinesis index (a = affected)
create or replace function app.pair_index(p_a double precision, p_b double precision,
                                          p_rest_a double precision, p_rest_b double precision)
returns double precision language sql immutable parallel safe as $f$
    select case when (p_a > coalesce(p_rest_a, 0) or p_b > coalesce(p_rest_b, 0)) and p_a + p_b > 0
                then (p_a - p_b) / (p_a + p_b) end
$f$;

-- affected / healthy of two levels under the same activity gate; null when the healthy side is 0
create or replace function app.pair_ratio(p_aff double precision, p_hea double precision,
                                          p_rest_aff double precision, p_rest_hea double precision)
returns double precision language sql immutable parallel safe as $f$
    select case when (p_aff > coalesce(p_rest_aff, 0) or p_hea > coalesce(p_rest_hea, 0)) and p_hea > 0
                then p_aff / p_hea end
$f$;

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
        muscle text, side text, s double precision, s2 double precision, n bigint
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
    select tw.task, tw.repetition, tw.time, tw.time_end, cm.muscle, cm.side, sum(u.v), sum(u.v::float8 * u.v), count(*)
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

    -- rest level of each muscle side: the RMS of its envelope over the session's rest task
    create temp table if not exists _rest (muscle text primary key, l double precision, r double precision)
        on commit drop;
    truncate _rest;
    insert into _rest
    select muscle, coalesce(sqrt(sum(s2) filter (where side = 'L') / nullif(sum(n) filter (where side = 'L'), 0)), 0),
           coalesce(sqrt(sum(s2) filter (where side = 'R') / nullif(sum(n) filter (where side = 'R'), 0)), 0)
    from _win_ch where task = 'rest' group by muscle;

    -- balance per repetition and per task (pooled), for every muscle with both sides
    -- levels per repetition; a window whose pair is inactive gets no balance row (an AI is never
    -- made up for it), and a row stored for it before is removed
    create temp table if not exists _rep (
        task text, repetition integer, w_start timestamptz, w_end timestamptz, muscle text,
        l double precision, r double precision, rl double precision, rr double precision
    ) on commit drop;
    truncate _rep;
    insert into _rep
    select w.task, w.repetition, w.w_start, w.w_end, w.muscle,
           app.activity_level(sum(s2) filter (where side = 'L') / nullif(sum(n) filter (where side = 'L'), 0),
                              coalesce(min(re.l), 0)),
           app.activity_level(sum(s2) filter (where side = 'R') / nullif(sum(n) filter (where side = 'R'), 0),
                              coalesce(min(re.r), 0)),
           coalesce(min(re.l), 0), coalesce(min(re.r), 0)
    from _win_ch w left join _rest re on re.muscle = w.muscle group by 1, 2, 3, 4, 5;
    delete from balance b using _rep x
     where b.device_id = v_device and b.muscle = x.muscle and b.window_kind = 'repetition' and b.time = x.w_start
       and app.pair_index(x.l, x.r, x.rl, x.rr) is null;
    insert into balance as b (time, time_end, device_id, session_id, window_kind, muscle, task, repetition,
                              left_value, right_value, ai, ratio, affected_side, normalized)
    select w_start, w_end, v_device, p_session, 'repetition', muscle, task, repetition, l, r,
           app.pair_index(l, r, rl, rr),
           case when v_aff = 'L' then app.pair_ratio(l, r, rl, rr) when v_aff = 'R' then app.pair_ratio(r, l, rr, rl) end,
           v_aff, false
    from _rep
    where l is not null and r is not null and app.pair_index(l, r, rl, rr) is not null
    on conflict (device_id, muscle, window_kind, time) do update
        set time_end = excluded.time_end, session_id = excluded.session_id, task = excluded.task,
            repetition = excluded.repetition, left_value = excluded.left_value,
            right_value = excluded.right_value, ai = excluded.ai, ratio = excluded.ratio,
            affected_side = excluded.affected_side;

    create temp table if not exists _task_mu (
        task text, muscle text, t0 timestamptz, t1 timestamptz, reps integer, l double precision,
        r double precision, rl double precision, rr double precision
    ) on commit drop;
    truncate _task_mu;
    insert into _task_mu
    select w.task, w.muscle, min(w_start), max(w_end), count(distinct repetition),
           app.activity_level(sum(s2) filter (where side = 'L') / nullif(sum(n) filter (where side = 'L'), 0),
                              coalesce(min(re.l), 0)),
           app.activity_level(sum(s2) filter (where side = 'R') / nullif(sum(n) filter (where side = 'R'), 0),
                              coalesce(min(re.r), 0)),
           coalesce(min(re.l), 0), coalesce(min(re.r), 0)
    from _win_ch w left join _rest re on re.muscle = w.muscle group by 1, 2;

    delete from balance b using _task_mu x
     where b.device_id = v_device and b.muscle = x.muscle and b.window_kind = 'task' and b.time = x.t0
       and app.pair_index(x.l, x.r, x.rl, x.rr) is null;
    insert into balance as b (time, time_end, device_id, session_id, window_kind, muscle, task, repetition,
                              left_value, right_value, ai, ratio, affected_side, normalized)
    select t0, t1, v_device, p_session, 'task', muscle, task, null, l, r,
           app.pair_index(l, r, rl, rr),
           case when v_aff = 'L' then app.pair_ratio(l, r, rl, rr) when v_aff = 'R' then app.pair_ratio(r, l, rr, rl) end,
           v_aff, false
    from _task_mu where l is not null and r is not null and app.pair_index(l, r, rl, rr) is not null
    on conflict (device_id, muscle, window_kind, time) do update
        set time_end = excluded.time_end, session_id = excluded.session_id, task = excluded.task,
            left_value = excluded.left_value, right_value = excluded.right_value, ai = excluded.ai,
            ratio = excluded.ratio, affected_side = excluded.affected_side;

    -- synkinesis: non-target muscles inside each target task (rest and calibration excluded)
    delete from session_synkinesis where session_id = p_session;
    insert into session_synkinesis (session_id, target_task, muscle, affected_uv, healthy_uv, index, flag)
    select p_session, t.task, t.muscle, a.aff, a.hea,
           app.pair_index(a.aff, a.hea, a.raff, a.rhea),
           coalesce(app.pair_index(a.aff, a.hea, a.raff, a.rhea) > p_syn_threshold, false)
    from _task_mu t
    join app.muscle_task mt on mt.muscle = t.muscle
    cross join lateral (select case when v_aff = 'L' then t.l else t.r end as aff,
                               case when v_aff = 'L' then t.r else t.l end as hea,
                               case when v_aff = 'L' then t.rl else t.rr end as raff,
                               case when v_aff = 'L' then t.rr else t.rl end as rhea) a
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
           app.pair_index(own.l, own.r, own.rl, own.rr),
           case when v_aff = 'L' then app.pair_ratio(own.l, own.r, own.rl, own.rr)
                when v_aff = 'R' then app.pair_ratio(own.r, own.l, own.rr, own.rl) end,
           100 * own.l / nullif(mvc.ref, 0), 100 * own.r / nullif(mvc.ref, 0),
           syn.max_index, coalesce(syn.any_flag, false),
           coalesce((select count(*) from activation a where a.session_id = p_session and a.muscle = m.muscle), 0),
           coalesce(own.reps, 0), own.l, own.r, mt.task, own.reps
    from (select distinct muscle from _task_mu) m
    left join app.muscle_task mt on mt.muscle = m.muscle
    left join _task_mu own on own.muscle = m.muscle and own.task = mt.task
    -- %MVC reference: the healthy side's level in the calibration (the stronger side's if unknown)
    left join (select muscle, case when v_aff = 'L' then r when v_aff = 'R' then l else greatest(l, r) end as ref
                 from _task_mu where task = 'mvc_calibration') mvc on mvc.muscle = m.muscle
    left join (select muscle, max(index) as max_index, bool_or(flag) as any_flag
                 from session_synkinesis where session_id = p_session group by muscle) syn
           on syn.muscle = m.muscle;
    get diagnostics v_n = row_count;

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
    -- the peak as %MVC: the peak's activity level over the pair's reference (normalisation above)
    update activation a
       set peak_pct_mvc = 100 * app.activity_level(a.peak_uv::float8 * a.peak_uv,
                                                   case when a.side = 'L' then coalesce(re.l, 0)
                                                        else coalesce(re.r, 0) end) / m.ref
      from (select muscle, case when v_aff = 'L' then r when v_aff = 'R' then l else greatest(l, r) end as ref
              from _task_mu where task = 'mvc_calibration') m
      left join _rest re on re.muscle = m.muscle
     where a.session_id = p_session and a.muscle = m.muscle and m.ref > 0;

    delete from app.session_dirty where session_id = p_session;
    return v_n;
end $$;

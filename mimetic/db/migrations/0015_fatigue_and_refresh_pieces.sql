-- 0015: fatigue in the pipeline, active minutes, the activation's peak time, and the session
-- analysis split into one function per measure family.
--
-- Fatigue (processors/measures/fatigue.py, the definition): the worker computes the median and mean
-- frequency of each channel's conditioned signal per 1 s window (0.5 s hop, Welch 0.25 s segments,
-- 20-450 Hz) as the frames stream, and fits each activation lasting at least MIMETIC_FATIGUE_MIN_S
-- (default 3 s) when it closes: activation.median_freq_hz / mean_freq_hz (means over the windows inside
-- it) and median_freq_slope_hz_s (0002, null until now) / mean_freq_slope_hz_s (least-squares slopes,
-- Hz/s, negative = fatiguing). Shorter activations keep them null. Per session and muscle,
-- session_muscle_summary.left_/right_median_freq_slope_hz_s are the mean slope of that side's
-- sustained activations, sustained_activations their number (app.refresh_session_fatigue).
--
-- active_minutes (0002, null until now): minutes of the session with muscle activity, the union over
-- all channels of its activations [onset, offset) (processors.measures.activation.active_minutes;
-- app.refresh_session_activity). activation.peak_time (0002, null until now) is filled by the worker.
--
-- app.refresh_session (0006, 0009, 0013 each copied it whole) is now an orchestrator calling one
-- function per part, in the same order and with the same SQL as 0013:
--   app.refresh_session_windows      per task window and channel: envelope sums, bad stretches, rest
--   app.refresh_session_balance      repetition and task balance rows (temp tables _rep, _task_mu)
--   app.refresh_session_synkinesis   session_synkinesis
--   app.refresh_session_summary      session_muscle_summary
--   app.refresh_session_activations  activations' task / repetition / latency / target, peak %MVC
--   app.refresh_session_fatigue      session fatigue per muscle and side
--   app.refresh_session_activity     session_summary.active_minutes
-- A later change replaces the one piece it changes (create or replace function, same signature). The
-- pieces share the orchestrator's temp tables (_win_ch, _bad, _rest, _rep, _task_mu: one transaction)
-- and run as its owner; nobody else may call them.

alter table activation
    add column median_freq_hz real,
    add column mean_freq_hz real,
    add column mean_freq_slope_hz_s real;
comment on column activation.median_freq_slope_hz_s is
    'Fatigue: least-squares slope (Hz/s) of the median frequency over the 1 s windows inside a sustained '
    'activation (>= MIMETIC_FATIGUE_MIN_S); null for shorter ones. processors/measures/fatigue.py.';
comment on column activation.median_freq_hz is 'Mean median frequency (Hz) of a sustained activation''s windows.';
comment on column activation.mean_freq_hz is 'Mean mean-frequency (Hz) of a sustained activation''s windows.';
comment on column activation.mean_freq_slope_hz_s is 'Slope (Hz/s) of the mean frequency, as median_freq_slope_hz_s.';

alter table session_muscle_summary
    add column left_median_freq_slope_hz_s real,
    add column right_median_freq_slope_hz_s real,
    add column sustained_activations integer not null default 0;
comment on column session_muscle_summary.left_median_freq_slope_hz_s is
    'Fatigue: mean median-frequency slope (Hz/s) of the left channel''s sustained activations in the session.';
comment on column session_muscle_summary.sustained_activations is
    'Activations of the muscle (both sides) long enough for a fatigue fit.';
comment on column session_summary.active_minutes is
    'Minutes with muscle activity: the union over all channels of the session''s activations.';

create or replace function app.refresh_session_windows(p_session uuid, p_device text, p_map jsonb) returns void
language plpgsql set search_path = pg_catalog, public, app, pg_temp as $$
begin
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
                 from jsonb_array_elements(coalesce(p_map, '[]'::jsonb)) as x) cm on cm.channel = a.channel
    where a.device_id = p_device
      and (a.alert_type in ('electrode_off', 'impedance', 'mains_noise', 'clipping') and cm.muscle is not null
           or a.alert_type = 'over_current')
      -- any alert open during the session's task windows (it may have been raised in an earlier session)
      and a.raised_at < (select max(time_end) from task_window where session_id = p_session)
      and coalesce(a.cleared_at, 'infinity') > (select min(time) from task_window where session_id = p_session);
    insert into _win_ch
    select tw.task, tw.repetition, tw.time, tw.time_end, cm.muscle, cm.side, sum(u.v), sum(u.v::float8 * u.v), count(*)
    from task_window tw
    join envelope e on e.device_id = p_device
                   and e.time >= tw.time - interval '2 seconds' and e.time < tw.time_end
    cross join lateral generate_subscripts(e.env, 1) as c(ch)
    cross join lateral unnest(e.env[c.ch:c.ch][:]) with ordinality as u(v, i)
    join (select (x ->> 'channel')::int as channel, x ->> 'muscle' as muscle, x ->> 'side' as side
            from jsonb_array_elements(coalesce(p_map, '[]'::jsonb)) as x) cm on cm.channel = c.ch - 1
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
end $$;

create or replace function app.refresh_session_balance(p_session uuid, p_device text, p_aff text) returns void
language plpgsql set search_path = pg_catalog, public, app, pg_temp as $$
begin
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
     where b.device_id = p_device and b.muscle = x.muscle and b.window_kind = 'repetition' and b.time = x.w_start
       and app.pair_index(x.l, x.r, x.rl, x.rr) is null;
    insert into balance as b (time, time_end, device_id, session_id, window_kind, muscle, task, repetition,
                              left_value, right_value, ai, ratio, affected_side, normalized)
    select w_start, w_end, p_device, p_session, 'repetition', muscle, task, repetition, l, r,
           app.pair_index(l, r, rl, rr),
           case when p_aff = 'L' then app.pair_ratio(l, r, rl, rr) when p_aff = 'R' then app.pair_ratio(r, l, rr, rl) end,
           p_aff, false
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
     where b.device_id = p_device and b.muscle = x.muscle and b.window_kind = 'task' and b.time = x.t0
       and app.pair_index(x.l, x.r, x.rl, x.rr) is null;
    insert into balance as b (time, time_end, device_id, session_id, window_kind, muscle, task, repetition,
                              left_value, right_value, ai, ratio, affected_side, normalized)
    select t0, t1, p_device, p_session, 'task', muscle, task, null, l, r,
           app.pair_index(l, r, rl, rr),
           case when p_aff = 'L' then app.pair_ratio(l, r, rl, rr) when p_aff = 'R' then app.pair_ratio(r, l, rr, rl) end,
           p_aff, false
    from _task_mu where l is not null and r is not null and app.pair_index(l, r, rl, rr) is not null
    on conflict (device_id, muscle, window_kind, time) do update
        set time_end = excluded.time_end, session_id = excluded.session_id, task = excluded.task,
            left_value = excluded.left_value, right_value = excluded.right_value, ai = excluded.ai,
            ratio = excluded.ratio, affected_side = excluded.affected_side;
end $$;

create or replace function app.refresh_session_synkinesis(p_session uuid, p_aff text, p_syn_threshold real)
returns void language plpgsql set search_path = pg_catalog, public, app, pg_temp as $$
begin
    -- synkinesis: non-target muscles inside each target task (rest and calibration excluded)
    delete from session_synkinesis where session_id = p_session;
    insert into session_synkinesis (session_id, target_task, muscle, affected_uv, healthy_uv, index, flag)
    select p_session, t.task, t.muscle, a.aff, a.hea,
           app.pair_index(a.aff, a.hea, a.raff, a.rhea),
           coalesce(app.pair_index(a.aff, a.hea, a.raff, a.rhea) > p_syn_threshold, false)
    from _task_mu t
    join app.muscle_task mt on mt.muscle = t.muscle
    cross join lateral (select case when p_aff = 'L' then t.l else t.r end as aff,
                               case when p_aff = 'L' then t.r else t.l end as hea,
                               case when p_aff = 'L' then t.rl else t.rr end as raff,
                               case when p_aff = 'L' then t.rr else t.rl end as rhea) a
    where p_aff is not null and t.task <> mt.task and t.task not in ('rest', 'mvc_calibration')
      and t.l is not null and t.r is not null;
end $$;

create or replace function app.refresh_session_summary(p_session uuid, p_aff text) returns integer
language plpgsql set search_path = pg_catalog, public, app, pg_temp as $$
declare
    v_n integer;
begin
    -- per-muscle session summary (called only when there is something to compute it from)
    delete from session_muscle_summary where session_id = p_session;
    insert into session_muscle_summary (session_id, muscle, ai, ratio, left_pct_mvc, right_pct_mvc, synkinesis,
                                        synkinesis_flag, activations, task_windows, left_uv, right_uv,
                                        target_task, repetitions)
    select p_session, m.muscle,
           app.pair_index(own.l, own.r, own.rl, own.rr),
           case when p_aff = 'L' then app.pair_ratio(own.l, own.r, own.rl, own.rr)
                when p_aff = 'R' then app.pair_ratio(own.r, own.l, own.rr, own.rl) end,
           100 * own.l / nullif(mvc.ref, 0), 100 * own.r / nullif(mvc.ref, 0),
           syn.max_index, coalesce(syn.any_flag, false),
           coalesce((select count(*) from activation a where a.session_id = p_session and a.muscle = m.muscle), 0),
           coalesce(own.reps, 0), own.l, own.r, mt.task, own.reps
    from (select distinct muscle from _task_mu) m
    left join app.muscle_task mt on mt.muscle = m.muscle
    left join _task_mu own on own.muscle = m.muscle and own.task = mt.task
    -- %MVC reference: the healthy side's level in the calibration (the stronger side's if unknown)
    left join (select muscle, case when p_aff = 'L' then r when p_aff = 'R' then l else greatest(l, r) end as ref
                 from _task_mu where task = 'mvc_calibration') mvc on mvc.muscle = m.muscle
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
    -- the peak as %MVC: the peak's activity level over the pair's reference (normalisation above)
    update activation a
       set peak_pct_mvc = 100 * app.activity_level(a.peak_uv::float8 * a.peak_uv,
                                                   case when a.side = 'L' then coalesce(re.l, 0)
                                                        else coalesce(re.r, 0) end) / m.ref
      from (select muscle, case when p_aff = 'L' then r when p_aff = 'R' then l else greatest(l, r) end as ref
              from _task_mu where task = 'mvc_calibration') m
      left join _rest re on re.muscle = m.muscle
     where a.session_id = p_session and a.muscle = m.muscle and m.ref > 0;
end $$;

-- fatigue per muscle and side: the mean of the sustained activations' median-frequency slopes
-- (processors.measures.fatigue.session_fatigue_slope)
create or replace function app.refresh_session_fatigue(p_session uuid) returns void
language plpgsql set search_path = pg_catalog, public, app, pg_temp as $$
begin
    update session_muscle_summary m
       set left_median_freq_slope_hz_s = f.l, right_median_freq_slope_hz_s = f.r,
           sustained_activations = f.n
      from (select s.muscle,
                   avg(a.median_freq_slope_hz_s) filter (where a.side = 'L') as l,
                   avg(a.median_freq_slope_hz_s) filter (where a.side = 'R') as r,
                   count(a.median_freq_slope_hz_s) as n
              from session_muscle_summary s
              left join activation a on a.session_id = s.session_id and a.muscle = s.muscle
             where s.session_id = p_session
             group by s.muscle) f
     where m.session_id = p_session and m.muscle = f.muscle;
end $$;

-- active minutes: the union over all channels of the session's activations [onset, offset)
-- (processors.measures.activation.active_minutes)
create or replace function app.refresh_session_activity(p_session uuid) returns void
language plpgsql set search_path = pg_catalog, public, app, pg_temp as $$
begin
    update session_summary s
       set active_minutes = coalesce((
           select sum(extract(epoch from i.t1 - i.t0)) / 60.0
             from (select min(onset) as t0, max(offset_at) as t1
                     from (select onset, offset_at,
                                  count(*) filter (where starts) over (order by onset, offset_at) as island
                             from (select onset, offset_at,
                                          onset > coalesce(max(offset_at) over (
                                              order by onset, offset_at
                                              rows between unbounded preceding and 1 preceding), '-infinity')
                                          as starts
                                     from activation where session_id = p_session) x) y
                    group by island) i), 0)
     where s.session_id = p_session;
end $$;

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
    perform app.refresh_session_windows(p_session, v_device, v_map);
    perform app.refresh_session_balance(p_session, v_device, v_aff);
    perform app.refresh_session_synkinesis(p_session, v_aff, p_syn_threshold);
    perform app.refresh_session_activity(p_session);
    -- the per-muscle summary replaces what the pipeline sent only when there is something to compute
    -- it from (task windows with envelope samples on mapped channels)
    if not exists (select 1 from _task_mu) then
        delete from app.session_dirty where session_id = p_session;
        return 0;
    end if;
    v_n := app.refresh_session_summary(p_session, v_aff);
    perform app.refresh_session_activations(p_session, v_aff);
    perform app.refresh_session_fatigue(p_session);
    delete from app.session_dirty where session_id = p_session;
    return v_n;
end $$;

revoke all on function app.refresh_session_windows(uuid, text, jsonb), app.refresh_session_balance(uuid, text, text),
    app.refresh_session_synkinesis(uuid, text, real), app.refresh_session_summary(uuid, text),
    app.refresh_session_activations(uuid, text), app.refresh_session_fatigue(uuid),
    app.refresh_session_activity(uuid) from public;

-- research views: the new columns appended (create or replace keeps the existing ones in place)
create or replace view research.session_muscle as
select rs.research_session_id, rs.research_id, rs.site_id, rs.session_number, rs.day_since_onset,
       rs.therapy_type, m.muscle, m.ai, abs(m.ai) as abs_ai, m.ratio, m.left_pct_mvc, m.right_pct_mvc,
       m.synkinesis, m.synkinesis_flag, m.activations, m.task_windows,
       m.left_median_freq_slope_hz_s, m.right_median_freq_slope_hz_s, m.sustained_activations
from app.research_session rs
join session_muscle_summary m on m.session_id = rs.session_id;
comment on view research.session_muscle is
    'Per finished session and muscle: asymmetry index AI=(L-R)/(L+R), ratio affected/healthy, %MVC per '
    'side, synkinesis (non-target co-activation, affected vs healthy) and its flag, fatigue (mean '
    'median-frequency slope of each side''s sustained activations, Hz/s).';

create or replace view research.activation as
select 'X-' || left(encode(sha256(convert_to((select value from app.secret where name = 'pseudonym_salt') || ':session:' || a.session_id, 'UTF8')), 'hex'), 16) as research_session_id, pp.research_id,
       extract(epoch from a.onset - so.started_at)::real as onset_s,
       extract(epoch from a.offset_at - so.started_at)::real as offset_s,
       a.duration_s, a.muscle, a.side, (a.side = p.affected_side) as affected,
       a.peak_uv, a.mean_uv, a.area_uv_s, a.peak_pct_mvc, a.task, a.repetition, a.onset_latency_s,
       a.target, a.median_freq_slope_hz_s,
       extract(epoch from a.peak_time - so.started_at)::real as peak_s,
       a.median_freq_hz, a.mean_freq_hz, a.mean_freq_slope_hz_s
from activation a
join app.session_base so on so.session_id = a.session_id
join patient p on p.patient_id = so.patient_id
join app.patient_pseudo pp on pp.patient_id = so.patient_id;
comment on view research.activation is
    'Muscle activations: onset/offset/peak in seconds since the session start, peak/mean (µV, %MVC), area, '
    'task and repetition, whether on the affected side, fatigue (median/mean frequency and their slopes, '
    'sustained activations only).';

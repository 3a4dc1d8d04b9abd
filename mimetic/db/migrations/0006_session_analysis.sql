-- 0006: task windows and the per-session analysis computed in the database.
--
-- Task markers and envelope frames travel on different topics with no order between
-- them, so the exact task-window statistics are computed where both are stored:
-- app.refresh_session(session_id) reads `task_window` and `envelope` and writes
--   * balance rows of window_kind 'repetition' (one per task repetition and muscle pair)
--     and 'task' (all repetitions of a task pooled), upserted on their natural key;
--   * session_muscle_summary (AI and ratio in the muscle's own task, synkinesis);
--   * session_synkinesis (every target task x non-target muscle pair).
-- Definitions (the same as the simulator's ground truth):
--   AI(m)    = (L - R) / (L + R), L and R the mean envelope (µV) of m's left/right channel
--              over every sample inside the windows [start, stop) of m's own task
--              (mimetic.domain.MUSCLES), all repetitions pooled; ratio = affected / healthy.
--   synkinesis(T, N) = (affected - healthy) / (affected + healthy) of non-target muscle N's
--              mean envelope inside target task T's windows; flagged above a threshold
--              (default 0.25). session_muscle_summary.synkinesis is N's largest index.
-- Sessions are marked in app.session_dirty by the sink when their envelopes, task windows
-- or summary are written; app.refresh_dirty_sessions() (run by the sink every few seconds
-- and by `mimetic jobs rollup`) recomputes finished dirty sessions, so late data is folded in.

create table task_window (
    session_id  uuid not null,
    task        text not null,
    repetition  integer not null,
    device_id   text not null,
    time        timestamptz not null,      -- task_start (device clock)
    time_end    timestamptz not null,      -- task_stop
    primary key (session_id, task, repetition),
    check (time_end >= time)
);
create index task_window_device_idx on task_window (device_id, time);
comment on table task_window is 'Task repetitions of a session ([task_start, task_stop) markers).';

create table session_synkinesis (
    session_id   uuid not null,
    target_task  text not null,
    muscle       text not null,             -- the non-target muscle
    affected_uv  real,
    healthy_uv   real,
    index        real,                      -- (affected - healthy) / (affected + healthy)
    flag         boolean not null default false,
    primary key (session_id, target_task, muscle)
);
comment on table session_synkinesis is
    'Co-activation of each non-target muscle inside each target task''s windows, affected vs healthy side.';

alter table session_muscle_summary
    add column left_uv real,
    add column right_uv real,
    add column target_task text,
    add column repetitions integer;
comment on column session_muscle_summary.left_uv is 'Mean envelope (µV) of the left channel in the muscle''s own task windows.';

alter table session_summary add column channel_map jsonb;

-- muscle -> its own task (mimetic.domain.MUSCLES)
create table app.muscle_task (muscle text primary key, task text not null);
insert into app.muscle_task values
    ('frontalis', 'brow_raise'), ('corrugator', 'frown'), ('orbicularis_oculi', 'eye_closure_tight'),
    ('zygomaticus', 'smile'), ('levator_labii', 'snarl'), ('orbicularis_oris', 'pucker'),
    ('depressor_anguli_oris', 'lip_depression'), ('mentalis', 'lip_depression'),
    ('platysma', 'lip_depression');

create table app.session_dirty (
    session_id  uuid primary key,
    marked_at   timestamptz not null default now()
);

create function app.refresh_session(p_session uuid, p_syn_threshold real default 0.25) returns integer
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

    -- per-muscle session summary (replaces what the pipeline sent, if anything)
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
comment on function app.refresh_session(uuid, real) is
    'Recompute task-window balance, per-muscle session summary and synkinesis of one session.';

-- finished sessions marked dirty at least p_settle ago (data may still be arriving before that)
create function app.refresh_dirty_sessions(p_settle interval default '2 seconds', p_limit integer default 50)
returns integer language plpgsql security definer set search_path = pg_catalog, public, app, pg_temp as $$
declare
    r record;
    k integer := 0;
begin
    for r in
        select d.session_id from app.session_dirty d
        join session_summary s on s.session_id = d.session_id
        where s.status in ('ended', 'timed_out') and d.marked_at <= now() - p_settle
        order by d.marked_at limit p_limit
        for update of d skip locked
    loop
        perform app.refresh_session(r.session_id);
        k := k + 1;
    end loop;
    return k;
end $$;

-- --- access ----------------------------------------------------------------------------------
alter table task_window enable row level security;
alter table session_synkinesis enable row level security;
create policy clinic_read on task_window for select to mimetic_clinic
    using (device_id = any ((select app.clinic_device_ids(current_user))::text[]));
create policy clinic_read on session_synkinesis for select to mimetic_clinic
    using (session_id in (select session_id from session_summary));
create policy ingest_write on task_window to mimetic_ingest using (true) with check (true);
create policy ingest_write on session_synkinesis to mimetic_ingest using (true) with check (true);
grant select on task_window, session_synkinesis to mimetic_clinic;
grant select, insert, update on task_window to mimetic_ingest;
grant select, insert, update, delete on session_synkinesis to mimetic_ingest;
grant select, insert, update, delete on app.session_dirty to mimetic_ingest;
grant usage on schema app to mimetic_ingest;
-- security definer: the sink (ingest) may trigger the analysis without reading the registry itself
revoke all on function app.refresh_session(uuid, real), app.refresh_dirty_sessions(interval, integer) from public;
grant execute on function app.refresh_session(uuid, real), app.refresh_dirty_sessions(interval, integer)
    to mimetic_ingest;

create view research.task_window as
select rs.research_session_id, rs.research_id, tw.task, tw.repetition,
       extract(epoch from tw.time - so.started_at)::real as start_s,
       extract(epoch from tw.time_end - so.started_at)::real as stop_s
from task_window tw
join app.session_base so on so.session_id = tw.session_id
join app.research_session rs on rs.session_id = tw.session_id;
comment on view research.task_window is 'Task repetitions: start/stop in seconds since the session start.';

create view research.session_synkinesis as
select rs.research_session_id, rs.research_id, rs.session_number, rs.therapy_type, x.target_task, x.muscle,
       x.affected_uv, x.healthy_uv, x.index, x.flag
from session_synkinesis x join app.research_session rs on rs.session_id = x.session_id;
comment on view research.session_synkinesis is
    'Per finished session, target task and non-target muscle: co-activation affected vs healthy, '
    'index = (affected - healthy) / (affected + healthy), flag above the threshold.';
grant select on research.task_window, research.session_synkinesis to mimetic_researcher;

-- 0003: the project's own rollups (TimescaleDB's continuous aggregates are not in the
-- Apache edition). processors/storage/jobs.py runs app.rollup(from, to) on a schedule
-- (`mimetic jobs rollup`): each call recomputes whole buckets in [from, to) and upserts,
-- so it is idempotent and a re-run over late data corrects earlier buckets.
-- app.rollup_state keeps the watermark (end of the last rolled-up range).

create table app.rollup_state (
    name        text primary key,
    watermark   timestamptz not null,
    updated_at  timestamptz not null default now()
);

-- per minute, device and channel: envelope mean / max / sample count
create table envelope_1m (
    bucket      timestamptz not null,
    device_id   text not null,
    channel     smallint not null,
    session_id  uuid,
    samples     integer not null,
    mean_uv     real not null,
    max_uv      real not null,
    constraint envelope_1m_key unique (device_id, channel, bucket)
);
select create_hypertable('envelope_1m', by_range('bucket', interval '7 days'));
create index envelope_1m_session_idx on envelope_1m (session_id, bucket);
comment on table envelope_1m is 'Rollup of envelope: per minute, device and channel (app.rollup, `mimetic jobs rollup`).';

-- per session, muscle and side: activation statistics and mean task balance
create table session_muscle_rollup (
    session_id        uuid not null,
    device_id         text not null,
    muscle            text not null,
    side              char(1) not null check (side in ('L', 'R')),
    activations       integer not null,
    active_s          real not null,
    mean_peak_uv      real,
    max_peak_uv       real,
    mean_area_uv_s    real,
    mean_peak_pct_mvc real,
    task_windows      integer not null,      -- balance task windows of this muscle
    mean_task_ai      real,                  -- mean AI over those windows (same for L and R)
    first_onset       timestamptz,
    last_offset       timestamptz,
    primary key (session_id, muscle, side)
);
comment on table session_muscle_rollup is
    'Rollup per session, muscle and side from activation and balance (app.rollup).';

create function app.rollup_envelope_1m(p_from timestamptz, p_to timestamptz) returns bigint
language sql as $$
    with b as (
        select time_bucket('1 minute', e.time) as bucket, e.device_id, c.ch - 1 as channel,
               (array_agg(e.session_id) filter (where e.session_id is not null))[1] as session_id,
               count(*) as samples, avg(v) as mean_uv, max(v) as max_uv
        from envelope e
        cross join lateral generate_subscripts(e.env, 1) as c(ch)
        cross join lateral unnest(e.env[c.ch:c.ch][:]) as v
        where e.time >= time_bucket('1 minute', p_from) and e.time < time_bucket('1 minute', p_to)
        group by 1, 2, 3
    ), up as (
        insert into envelope_1m as r (bucket, device_id, channel, session_id, samples, mean_uv, max_uv)
        select bucket, device_id, channel, session_id, samples, mean_uv, max_uv from b
        on conflict (device_id, channel, bucket) do update
            set session_id = excluded.session_id, samples = excluded.samples,
                mean_uv = excluded.mean_uv, max_uv = excluded.max_uv
            where (r.session_id, r.samples, r.mean_uv, r.max_uv)
                  is distinct from (excluded.session_id, excluded.samples, excluded.mean_uv, excluded.max_uv)
        returning 1
    )
    select count(*) from up
$$;

-- recompute, in full, every session that has an activation or balance row in [from, to)
create function app.rollup_session_muscle(p_from timestamptz, p_to timestamptz) returns bigint
language sql as $$
    with touched as (
        select distinct session_id from activation
         where onset >= p_from and onset < p_to and session_id is not null
        union
        select distinct session_id from balance
         where time >= p_from and time < p_to and session_id is not null
    ), act as (
        select a.session_id, min(a.device_id) as device_id, a.muscle, a.side,
               count(*) as activations, sum(a.duration_s) as active_s,
               avg(a.peak_uv) as mean_peak_uv, max(a.peak_uv) as max_peak_uv,
               avg(a.area_uv_s) as mean_area_uv_s, avg(a.peak_pct_mvc) as mean_peak_pct_mvc,
               min(a.onset) as first_onset, max(a.offset_at) as last_offset
        from activation a join touched t using (session_id)
        group by a.session_id, a.muscle, a.side
    ), bal as (
        select b.session_id, min(b.device_id) as device_id, b.muscle,
               count(*) as task_windows, avg(b.ai) as mean_task_ai
        from balance b join touched t using (session_id)
        where b.window_kind = 'task'
        group by b.session_id, b.muscle
    ), sides as (
        select s.side from (values ('L'), ('R')) as s(side)
    ), rows as (
        select coalesce(act.session_id, bal.session_id) as session_id,
               coalesce(act.device_id, bal.device_id) as device_id,
               coalesce(act.muscle, bal.muscle) as muscle,
               coalesce(act.side, sides.side) as side,
               coalesce(act.activations, 0) as activations, coalesce(act.active_s, 0) as active_s,
               act.mean_peak_uv, act.max_peak_uv, act.mean_area_uv_s, act.mean_peak_pct_mvc,
               coalesce(bal.task_windows, 0) as task_windows, bal.mean_task_ai,
               act.first_onset, act.last_offset
        from bal cross join sides
        full join act on act.session_id = bal.session_id and act.muscle = bal.muscle
                     and act.side = sides.side
    ), up as (
        insert into session_muscle_rollup as r
        select session_id, device_id, muscle, side, activations, active_s, mean_peak_uv, max_peak_uv,
               mean_area_uv_s, mean_peak_pct_mvc, task_windows, mean_task_ai, first_onset, last_offset
        from rows where session_id is not null
        on conflict (session_id, muscle, side) do update
            set activations = excluded.activations, active_s = excluded.active_s,
                mean_peak_uv = excluded.mean_peak_uv, max_peak_uv = excluded.max_peak_uv,
                mean_area_uv_s = excluded.mean_area_uv_s, mean_peak_pct_mvc = excluded.mean_peak_pct_mvc,
                task_windows = excluded.task_windows, mean_task_ai = excluded.mean_task_ai,
                first_onset = excluded.first_onset, last_offset = excluded.last_offset
            where (r.activations, r.active_s, r.task_windows, r.mean_task_ai, r.mean_peak_uv)
                  is distinct from (excluded.activations, excluded.active_s, excluded.task_windows,
                                    excluded.mean_task_ai, excluded.mean_peak_uv)
        returning 1
    )
    select count(*) from up
$$;

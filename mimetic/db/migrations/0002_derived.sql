-- 0002: derived data written by the sink (processors/sink.py) from the derived topics.
--
-- Every time-series table is a hypertable whose unique constraint is the record's
-- natural key (processors/records.py, `natural_key()`) and always includes the
-- time column (TimescaleDB requires it). The sink copies a batch into a temporary
-- staging table and moves it with INSERT ... ON CONFLICT DO NOTHING, so replaying a
-- batch writes no duplicate row.
--
-- Envelope layout: ONE ROW PER DEVICE FRAME with a 2-D real[][] (channels x samples).
-- Measured (see processors/storage/bench.py) against one row per channel and frame
-- with a 1-D real[]: 8x fewer rows, index entries and tuple headers for 8 channels,
-- so COPY and the ON CONFLICT move are several times faster per sample and the table
-- is about half the size; the channel -> (muscle, side) map stays with the session
-- and the view `envelope_channel` unnests a channel when a query needs one.

create schema app;   -- internal helpers (pseudonyms, job state); no grants to readers
comment on schema app is 'mimetic internals: job state, pseudonym salt, RLS helpers. Not for readers.';

-- --- envelopes ----------------------------------------------------------------
create table envelope (
    time          timestamptz not null,      -- time of the first envelope sample
    device_id     text not null,
    seq           bigint not null,           -- device frame sequence number
    session_id    uuid,
    fs_hz         real not null check (fs_hz > 0),
    env           real[] not null,           -- 2-D: env[channel + 1][sample + 1], µV
    clipped       integer not null default 0,   -- bit mask of clipped channels
    stim_blanked  boolean not null default false,
    constraint envelope_key unique (device_id, time, seq)
);
select create_hypertable('envelope', by_range('time', interval '1 hour'));
create index envelope_session_idx on envelope (session_id, time desc);
comment on table envelope is
    'sEMG envelopes (µV), one row per device frame: env[c][s] is channel c-1, sample s-1 at '
    'time + (s-1)/fs_hz. Channel -> muscle/side via therapy_session.channel_map or device.channel_map '
    '(view envelope_channel does the mapping).';

-- --- signal quality per channel and window --------------------------------------
create table signal_quality (
    time               timestamptz not null,   -- window start
    device_id          text not null,
    channel            smallint not null,
    session_id         uuid,
    window_s           real not null,
    muscle             text,
    side               char(1) check (side in ('L', 'R')),
    rms_uv             real,
    baseline_uv        real,
    snr_db             real,
    mains_ratio        real,
    clipping_frac      real,
    flatline_frac      real,
    stim_artifact_frac real,
    contact_ok         boolean,
    score              real,
    constraint signal_quality_key unique (device_id, channel, time)
);
select create_hypertable('signal_quality', by_range('time', interval '1 day'));
create index signal_quality_session_idx on signal_quality (session_id, time desc);

-- --- sequence accounting per device (pipeline health) ---------------------------
create table stream_stats (
    time            timestamptz not null,    -- window end
    device_id       text not null,
    session_id      uuid,
    window_s        real not null,
    frames          integer not null default 0,
    samples         bigint not null default 0,
    gaps            integer not null default 0,
    missing_frames  integer not null default 0,
    duplicates      integer not null default 0,
    late            integer not null default 0,
    dead_lettered   integer not null default 0,
    last_seq        bigint,
    constraint stream_stats_key unique (device_id, time)
);
select create_hypertable('stream_stats', by_range('time', interval '1 day'));

-- --- left/right balance ---------------------------------------------------------
create table balance (
    time           timestamptz not null,     -- window start
    time_end       timestamptz not null,
    device_id      text not null,
    session_id     uuid,
    window_kind    text not null check (window_kind in ('sliding', 'task', 'repetition')),
    muscle         text not null,
    task           text,
    repetition     integer,
    left_value     real not null,            -- normalized activation (%MVC when normalized)
    right_value    real not null,
    ai             real not null check (ai between -1 and 1),   -- (L - R) / (L + R)
    ratio          real check (ratio >= 0),  -- affected / healthy
    affected_side  char(1) check (affected_side in ('L', 'R')),
    normalized     boolean not null default true,
    constraint balance_key unique (device_id, muscle, window_kind, time)
);
select create_hypertable('balance', by_range('time', interval '1 day'));
create index balance_session_idx on balance (session_id, muscle, time);

-- --- activations ---------------------------------------------------------------
create table activation (
    onset            timestamptz not null,
    offset_at        timestamptz not null,
    device_id        text not null,
    session_id       uuid,
    channel          smallint not null,
    muscle           text not null,
    side             char(1) not null check (side in ('L', 'R')),
    duration_s       real generated always as (extract(epoch from offset_at - onset)) stored,
    peak_uv          real not null,
    peak_time        timestamptz,
    mean_uv          real not null,
    area_uv_s        real not null,
    peak_pct_mvc     real,
    task             text,
    repetition       integer,
    onset_latency_s  real,
    target           boolean,
    median_freq_slope_hz_s real,
    constraint activation_key unique (device_id, channel, onset)
);
select create_hypertable('activation', by_range('onset', interval '1 day'));
create index activation_session_idx on activation (session_id, muscle, onset);

-- --- alerts --------------------------------------------------------------------
-- alert_event: every raise and clear (history); alert: one row per episode (current state)
create table alert_event (
    time        timestamptz not null,
    alert_id    text not null,
    device_id   text not null,
    session_id  uuid,
    alert_type  text not null,
    severity    text not null check (severity in ('info', 'warning', 'critical')),
    state       text not null check (state in ('raised', 'cleared')),
    raised_at   timestamptz not null,
    channel     smallint,
    value       real,
    threshold   real,
    message     text not null default '',
    constraint alert_event_key unique (alert_id, state, time)
);
select create_hypertable('alert_event', by_range('time', interval '7 days'));
create index alert_event_device_idx on alert_event (device_id, time desc);

create table alert (
    alert_id    text primary key,
    device_id   text not null,
    session_id  uuid,
    alert_type  text not null,
    severity    text not null check (severity in ('info', 'warning', 'critical')),
    channel     smallint,
    raised_at   timestamptz not null,
    cleared_at  timestamptz,
    value       real,
    threshold   real,
    message     text not null default ''
);
create index alert_active_idx on alert (device_id) where cleared_at is null;
create index alert_raised_idx on alert (raised_at desc);

-- --- session summaries -----------------------------------------------------------
create table session_summary (
    session_id          uuid primary key,
    device_id           text not null,
    patient_id          bigint,
    therapy_type        text not null,
    started_at          timestamptz not null,
    ended_at            timestamptz,
    status              text not null check (status in ('open', 'ended', 'timed_out')),
    minutes             real not null,
    active_minutes      real,
    discomfort          smallint check (discomfort between 0 and 10),
    skin_reaction       text,
    max_stim_current_ua real,
    frames              bigint not null default 0,
    missing_frames      bigint not null default 0,
    duplicates          bigint not null default 0,
    alerts              integer not null default 0,
    tasks               jsonb not null default '{}'::jsonb,   -- task -> repetitions
    revision            integer not null default 0,
    computed_at         timestamptz not null,
    stored_at           timestamptz not null default now()
);
create index session_summary_patient_idx on session_summary (patient_id, started_at);
create index session_summary_device_idx on session_summary (device_id, started_at);

create table session_muscle_summary (
    session_id      uuid not null references session_summary (session_id) on delete cascade,
    muscle          text not null,
    ai              real,
    ratio           real,
    left_pct_mvc    real,
    right_pct_mvc   real,
    synkinesis      real,
    synkinesis_flag boolean not null default false,
    activations     integer not null default 0,
    task_windows    integer not null default 0,
    primary key (session_id, muscle)
);

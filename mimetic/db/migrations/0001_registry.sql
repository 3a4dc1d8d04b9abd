-- 0001: the registry (clinics, patients, devices, sessions) and the first hypertable.
-- Identifying data lives apart from the pseudonymous patient row, so roles that
-- must not see it (researchers) can be kept away from one table.

create extension if not exists timescaledb;

create table clinic (
    clinic_id   text primary key,
    name        text not null,
    timezone    text not null default 'UTC',
    created_at  timestamptz not null default now()
);

create table patient (
    patient_id        bigint generated always as identity primary key,
    clinic_id         text not null references clinic (clinic_id),
    code              text not null unique,            -- pseudonymous code, e.g. P-7F3K2
    etiology          text,                            -- bell_palsy, post_surgical, stroke, ...
    affected_side     char(1) check (affected_side in ('L', 'R')),
    onset_date        date,
    baseline_hb_grade smallint check (baseline_hb_grade between 1 and 6),        -- House-Brackmann I-VI
    baseline_sunnybrook smallint check (baseline_sunnybrook between 0 and 100),
    planned_sessions  smallint check (planned_sessions > 0),
    planned_minutes   smallint check (planned_minutes > 0),
    created_at        timestamptz not null default now()
);

-- identifying data: never exposed to researcher roles
create table patient_identity (
    patient_id  bigint primary key references patient (patient_id) on delete cascade,
    full_name   text,
    birth_date  date,
    contact     text
);

create table device (
    device_id     text primary key check (device_id ~ '^[A-Za-z0-9._-]{3,64}$'),
    clinic_id     text not null references clinic (clinic_id),
    patient_id    bigint references patient (patient_id),
    model         text,
    firmware      text,
    fs_hz         integer check (fs_hz between 100 and 20000),
    -- [{"channel": 0, "muscle": "zygomaticus", "side": "L"}, ...]
    channel_map   jsonb not null default '[]'::jsonb check (jsonb_typeof(channel_map) = 'array'),
    secret_hash   text,                                 -- hashed device credential, never the secret
    status        text not null default 'active' check (status in ('active', 'revoked')),
    created_at    timestamptz not null default now(),
    revoked_at    timestamptz
);
create index device_patient_idx on device (patient_id);

create table therapy_session (
    session_id        uuid primary key,
    patient_id        bigint references patient (patient_id),
    device_id         text not null references device (device_id),
    therapy_type      text not null,                    -- microcurrent, biofeedback_exercise, ...
    started_at        timestamptz not null,
    ended_at          timestamptz,
    status            text not null default 'open' check (status in ('open', 'ended', 'timed_out')),
    stimulation       jsonb,                            -- prescribed current limit, frequency, waveform
    channel_map       jsonb,                            -- the map in force during this session
    discomfort        smallint check (discomfort between 0 and 10),
    skin_reaction     text,
    notes             text
);
create index therapy_session_patient_idx on therapy_session (patient_id, started_at desc);
create index therapy_session_device_idx on therapy_session (device_id, started_at desc);

-- device telemetry: the first hypertable
create table telemetry (
    time              timestamptz not null,
    device_id         text not null,
    seq               bigint not null,
    battery_pct       real,
    temperature_c     real,
    impedance_kohm    real[],                           -- per electrode, channel order
    stim_current_ua   real,
    signal_strength_dbm real,
    firmware_errors   text[],
    primary key (device_id, time, seq)
);
select create_hypertable('telemetry', by_range('time', interval '1 day'));

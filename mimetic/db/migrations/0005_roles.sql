-- 0005: roles, grants and row-level security.
--
-- Four group roles (NOLOGIN; cluster-wide, so created only when missing). People and
-- services log in with LOGIN roles that are members of one group; `mimetic roles create`
-- (processors/storage/roles.py) makes them with generated passwords kept in
-- $MIMETIC_HOME/secrets/, never in the repository.
--
--   mimetic_ingest      the sink and other writers: insert/update on data tables, no read of
--                       patient, patient_identity or any reader view.
--   mimetic_clinic      clinic staff and the clinic's Grafana data source: read their own
--                       clinic's rows only (row-level security). A clinic is bound to login
--                       roles in app.clinic_login, maintained by the owner: membership of a
--                       database role decides the clinic, never a setting the client could
--                       change (a `SET mimetic.clinic_id` design would let any clinic login
--                       read any clinic). One Grafana data source per clinic, with that
--                       clinic's login.
--   mimetic_researcher  the `research` schema only (de-identified views), across clinics.
--   mimetic_operator    the `ops` schema and device telemetry, alerts, signal quality and
--                       stream statistics of every device; no patient table.
-- The owner role (migrations, jobs) owns every table, so RLS does not apply to it.

do $$
declare r text;
begin
    foreach r in array array['mimetic_ingest', 'mimetic_clinic', 'mimetic_researcher', 'mimetic_operator'] loop
        if not exists (select 1 from pg_roles where rolname = r) then
            execute format('create role %I nologin', r);
        end if;
    end loop;
end $$;

-- --- clinic binding ------------------------------------------------------------------------
create table app.clinic_login (
    role_name  text primary key,            -- a login or group role whose members act for the clinic
    clinic_id  text not null references clinic (clinic_id) on delete cascade,
    created_at timestamptz not null default now()
);
comment on table app.clinic_login is
    'Which database roles act for which clinic (members of role_name see clinic_id''s rows).';

create function app.clinic_ids(p_user name) returns text[]
language sql stable security definer set search_path = pg_catalog, app as $$
    select coalesce(array_agg(distinct l.clinic_id), '{}')
    from app.clinic_login l join pg_roles r on r.rolname = l.role_name
    where pg_has_role(p_user, r.oid, 'MEMBER')
$$;
comment on function app.clinic_ids(name) is 'Clinics the given role acts for (RLS helper).';

create function app.clinic_device_ids(p_user name) returns text[]
language sql stable security definer set search_path = pg_catalog, public, app as $$
    select coalesce(array_agg(device_id), '{}') from public.device
    where clinic_id = any (app.clinic_ids(p_user))
$$;
comment on function app.clinic_device_ids(name) is 'Devices of the clinics the given role acts for (RLS helper).';

revoke all on schema app from public;
revoke all on all functions in schema app from public;
grant usage on schema app to mimetic_clinic;
grant execute on function app.clinic_ids(name), app.clinic_device_ids(name) to mimetic_clinic;

-- --- row-level security -------------------------------------------------------------------
do $$
declare t text;
begin
    foreach t in array array[
        'clinic', 'patient', 'patient_identity', 'device', 'therapy_session', 'telemetry',
        'envelope', 'signal_quality', 'stream_stats', 'balance', 'activation', 'alert_event', 'alert',
        'session_summary', 'session_muscle_summary', 'envelope_1m', 'session_muscle_rollup'] loop
        execute format('alter table %I enable row level security', t);
    end loop;
    -- clinic readers: rows of their devices
    foreach t in array array[
        'telemetry', 'envelope', 'signal_quality', 'stream_stats', 'balance', 'activation', 'alert_event',
        'alert', 'session_summary', 'envelope_1m', 'session_muscle_rollup', 'therapy_session'] loop
        execute format('create policy clinic_read on %I for select to mimetic_clinic '
                       'using (device_id = any ((select app.clinic_device_ids(current_user))::text[]))', t);
    end loop;
    -- operator: every device's health data
    foreach t in array array['telemetry', 'signal_quality', 'stream_stats', 'alert_event', 'alert', 'device'] loop
        execute format('create policy operator_read on %I for select to mimetic_operator using (true)', t);
    end loop;
    -- ingest: the tables it writes (select is needed by ON CONFLICT ... DO UPDATE)
    foreach t in array array[
        'telemetry', 'envelope', 'signal_quality', 'stream_stats', 'balance', 'activation', 'alert_event',
        'alert', 'session_summary', 'session_muscle_summary', 'therapy_session', 'device'] loop
        execute format('create policy ingest_write on %I to mimetic_ingest using (true) with check (true)', t);
    end loop;
end $$;

create policy clinic_read on clinic for select to mimetic_clinic
    using (clinic_id = any ((select app.clinic_ids(current_user))::text[]));
create policy clinic_read on patient for select to mimetic_clinic
    using (clinic_id = any ((select app.clinic_ids(current_user))::text[]));
create policy clinic_read on patient_identity for select to mimetic_clinic
    using (patient_id in (select patient_id from patient));
create policy clinic_read on device for select to mimetic_clinic
    using (clinic_id = any ((select app.clinic_ids(current_user))::text[]));
create policy clinic_read on session_muscle_summary for select to mimetic_clinic
    using (session_id in (select session_id from session_summary));

-- --- grants -------------------------------------------------------------------------------
-- clinic: its rows (RLS) of registry, data, rollups and the invoker views; never a device secret
grant select on clinic, patient, patient_identity, therapy_session, telemetry, envelope, signal_quality,
    stream_stats, balance, activation, alert_event, alert, session_summary, session_muscle_summary,
    envelope_1m, session_muscle_rollup,
    session_overview, patient_progress, envelope_channel, envelope_sample, active_alert
    to mimetic_clinic;
grant select (device_id, clinic_id, patient_id, model, firmware, fs_hz, channel_map, status, created_at,
              revoked_at) on device to mimetic_clinic;

-- researcher: the research schema only
grant usage on schema research to mimetic_researcher;
grant select on all tables in schema research to mimetic_researcher;

-- operator: ops views plus device-health tables; no patient, identity or session data
grant usage on schema ops to mimetic_operator;
grant select on all tables in schema ops to mimetic_operator;
grant select on telemetry, signal_quality, stream_stats, alert_event, alert to mimetic_operator;

-- ingest: write the data tables; read only what the writes need
grant select, insert, update on telemetry, envelope, signal_quality, stream_stats, balance, activation,
    alert_event, alert, session_summary, session_muscle_summary, therapy_session to mimetic_ingest;
grant delete on session_muscle_summary to mimetic_ingest;
grant select (device_id, clinic_id, patient_id, channel_map) on device to mimetic_ingest;

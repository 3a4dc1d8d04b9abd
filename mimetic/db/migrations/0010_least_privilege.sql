-- 0010: least privilege for the service roles (issue 11).
--
-- Runs as the owner role, which is no superuser and has no CREATEROLE: the group roles,
-- the database ACL (no PUBLIC CONNECT) and the timescaledb extension are made beforehand by
-- the admin superuser (mimetic/db/admin.py, run by `stack up`, `migrate`, fresh databases).
--
--   mimetic_gateway   device authentication only: device id, clinic, patient id, fs, channel
--                     map, secret hash and status of the device table; nothing else.
--   mimetic_ingest    (the sink) keeps writing the derived tables, but the registry's session
--                     row only in the columns the sink maintains: never the clinicians' notes.
--   mimetic_operator  alerts without the patient's own reports: discomfort and skin-reaction
--                     alerts carry the patient's words ("discomfort 8/10, skin: burning") and
--                     score, so the base tables hide those rows and ops.active_alert shows them
--                     without value and message. Clinics still see them in full.

do $$
begin
    if not exists (select 1 from pg_roles where rolname = 'mimetic_gateway') then
        raise exception 'role mimetic_gateway is missing: run `mimetic migrate` where the admin '
            'password is available (mimetic/db/admin.py), or have a DBA create role mimetic_gateway nologin';
    end if;
end $$;

-- --- gateway ----------------------------------------------------------------------------
grant select (device_id, clinic_id, patient_id, fs_hz, channel_map, secret_hash, status)
    on device to mimetic_gateway;
create policy gateway_auth on device for select to mimetic_gateway using (true);

-- --- ingest: the session row without notes ----------------------------------------------
revoke select, insert, update on therapy_session from mimetic_ingest;
grant select (session_id, patient_id, device_id, therapy_type, started_at, ended_at, status, discomfort,
              skin_reaction, channel_map) on therapy_session to mimetic_ingest;
grant insert (session_id, patient_id, device_id, therapy_type, started_at, ended_at, status, discomfort,
              skin_reaction, channel_map) on therapy_session to mimetic_ingest;
grant update (patient_id, ended_at, status, discomfort, skin_reaction, channel_map)
    on therapy_session to mimetic_ingest;

-- --- operator: no patient reports ---------------------------------------------------------
-- the alert types that carry a patient's report (processors/alerting.py, records.ALERT_TYPES)
create function app.patient_reported_alert(p_alert_type text) returns boolean
language sql immutable parallel safe as $$
    select p_alert_type in ('discomfort', 'skin_reaction')
$$;
comment on function app.patient_reported_alert(text) is
    'Alert types whose value and message are the patient''s own report (clinic eyes only).';

-- callable by anyone (no data in it): the policies and the view run it as the reader
grant execute on function app.patient_reported_alert(text) to public;
alter policy operator_read on alert using (not app.patient_reported_alert(alert_type));
alter policy operator_read on alert_event using (not app.patient_reported_alert(alert_type));

create or replace view ops.active_alert as
select alert_id, device_id, alert_type, severity, channel, raised_at,
       case when app.patient_reported_alert(alert_type) then null else value end as value,
       threshold,
       case when app.patient_reported_alert(alert_type) then 'patient report (clinic only)'
            else message end as message
from alert where cleared_at is null;
comment on view ops.active_alert is
    'Alerts raised and not yet cleared; patient-reported ones (discomfort, skin reaction) without '
    'their value and words.';

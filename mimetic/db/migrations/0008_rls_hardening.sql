-- 0008: the RLS helpers answer only for the caller. app.clinic_ids(role) and
-- app.clinic_device_ids(role) are SECURITY DEFINER (they read the clinic binding and the
-- device registry); policies pass current_user. Called directly with another role's name,
-- they now return nothing unless the session's login is a member of that role, so a
-- clinic login cannot list another clinic's id or devices.

create or replace function app.clinic_ids(p_user name) returns text[]
language sql stable security definer set search_path = pg_catalog, app as $$
    select coalesce(array_agg(distinct l.clinic_id), '{}')
    from app.clinic_login l join pg_roles r on r.rolname = l.role_name
    where pg_has_role(p_user, r.oid, 'MEMBER')
      and pg_has_role(session_user, p_user, 'MEMBER')
$$;

create or replace function app.clinic_device_ids(p_user name) returns text[]
language sql stable security definer set search_path = pg_catalog, public, app as $$
    select coalesce(array_agg(device_id), '{}') from public.device
    where clinic_id = any (app.clinic_ids(p_user))
$$;

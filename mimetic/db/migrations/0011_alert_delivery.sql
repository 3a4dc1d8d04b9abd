-- 0011: alert delivery, acknowledgement, escalation and their audit (the notifier, alerts/).
--
-- app.alert_receiver     where notifications go: a clinic's receivers (clinic_id) or the
--                        operators' (clinic_id null); webhook (url) or e-mail (address); receivers
--                        of one audience are tried tier by tier (escalation_order, lowest first).
--                        The webhook's HMAC secret is a file in the notifier's secrets directory
--                        (secret_ref), never a column.
-- app.alert_notice       one raise or clear the notifier took from Kafka, with its audience and the
--                        notification body: the durable queue that lets it commit Kafka offsets.
-- app.alert_delivery     one notice to one receiver: pending until a 2xx (or SMTP accept), then
--                        delivered; retried with capped back-off; lease_until keeps two senders
--                        from sending the same row at once.
-- alert_handling         per alert: acknowledged / resolved (who, when, note) and how far it was
--                        escalated. Public with row-level security, so the clinic and operator
--                        dashboards can show it: a clinic sees only its own devices' alerts.
-- app.alert_api_token    bearer tokens of the notifier's HTTP API (sha-256 of the token only).
-- app.alert_audit        append-only: every delivery, acknowledgement, resolution and escalation.
--
-- Group role mimetic_notifier (NOLOGIN): what the notifier process needs, nothing else. Its login
-- is made like the sink's and named in MIMETIC_NOTIFY_PG_USER.

do $$
begin
    if not exists (select 1 from pg_roles where rolname = 'mimetic_notifier') then
        create role mimetic_notifier nologin;
    end if;
end $$;

create table app.alert_receiver (
    receiver_id      bigint generated always as identity primary key,
    name             text not null unique check (name ~ '^[A-Za-z0-9._-]{1,64}$'),
    clinic_id        text references clinic (clinic_id) on delete cascade,   -- null: operators
    kind             text not null check (kind in ('webhook', 'email')),
    target           text not null check (length(target) between 3 and 2000),  -- URL or e-mail address
    escalation_order smallint not null default 0 check (escalation_order between 0 and 100),
    secret_ref       text check (secret_ref ~ '^[A-Za-z0-9._-]{1,128}$'),
    enabled          boolean not null default true,
    created_at       timestamptz not null default now(),
    check ((kind = 'webhook') = (secret_ref is not null))
);
create index alert_receiver_audience_idx on app.alert_receiver (clinic_id, escalation_order);
comment on table app.alert_receiver is
    'Alert receivers: a clinic''s (clinic_id) or the operators'' (null), tried in escalation_order.';

create table app.alert_notice (
    alert_id    text not null,
    state       text not null check (state in ('raised', 'cleared')),
    device_id   text not null,
    clinic_id   text,                                 -- the device's clinic when taken
    audience    text not null check (audience in ('clinic', 'operators')),
    alert_type  text not null,
    severity    text not null check (severity in ('info', 'warning', 'critical')),
    event_time  timestamptz not null,
    payload     jsonb not null,                       -- the notification body (without the delivery reason)
    created_at  timestamptz not null default now(),
    primary key (alert_id, state)
);
create index alert_notice_created_idx on app.alert_notice (created_at desc);

create table app.alert_delivery (
    alert_id        text not null,
    state           text not null,
    receiver_id     bigint not null references app.alert_receiver (receiver_id) on delete cascade,
    reason          text not null default 'audience' check (reason in ('audience', 'escalation')),
    status          text not null default 'pending' check (status in ('pending', 'delivered')),
    attempts        integer not null default 0,
    next_attempt_at timestamptz not null default now(),
    lease_until     timestamptz,
    last_error      text,
    created_at      timestamptz not null default now(),
    delivered_at    timestamptz,
    primary key (alert_id, state, receiver_id),
    foreign key (alert_id, state) references app.alert_notice (alert_id, state) on delete cascade
);
create index alert_delivery_due_idx on app.alert_delivery (next_attempt_at) where status = 'pending';

create table alert_handling (
    alert_id         text primary key,
    device_id        text not null,
    alert_type       text not null,
    severity         text not null check (severity in ('info', 'warning', 'critical')),
    raised_at        timestamptz not null,
    cleared_at       timestamptz,
    notified_at      timestamptz not null default now(),   -- when the notifier queued the raise
    escalated_order  smallint,                             -- tier last notified (null: none yet)
    escalated_at     timestamptz,
    acknowledged_at  timestamptz,
    acknowledged_by  text,
    ack_note         text,
    resolved_at      timestamptz,
    resolved_by      text,
    resolve_note     text
);
create index alert_handling_open_idx on alert_handling (notified_at)
    where acknowledged_at is null and resolved_at is null and severity = 'critical';
comment on table alert_handling is
    'Per alert: acknowledgement and resolution (who, when, note) and escalation tier reached.';

create table app.alert_api_token (
    token_sha256 text primary key,
    name         text not null unique check (name ~ '^[A-Za-z0-9._@-]{1,64}$'),
    clinic_id    text references clinic (clinic_id) on delete cascade,   -- null: operator
    created_at   timestamptz not null default now()
);
comment on table app.alert_api_token is
    'Bearer tokens of the notifier API: a clinic user''s (clinic_id) or an operator''s; only a hash.';

create table app.alert_audit (
    audit_id    bigint generated always as identity primary key,
    time        timestamptz not null default clock_timestamp(),
    action      text not null check (action in ('delivered', 'acknowledged', 'resolved', 'escalated')),
    alert_id    text not null,
    state       text,
    receiver_id bigint,
    actor       text not null,            -- 'notifier' or the acknowledging/resolving person
    detail      text not null default ''
);
create index alert_audit_alert_idx on app.alert_audit (alert_id, time);
comment on table app.alert_audit is 'Append-only record of every delivery, acknowledgement, resolution, escalation.';

create function app.alert_audit_append_only() returns trigger language plpgsql as $$
begin
    raise exception 'app.alert_audit is append-only (% refused)', tg_op;
end $$;
create trigger alert_audit_append_only before update or delete on app.alert_audit
    for each row execute function app.alert_audit_append_only();
create trigger alert_audit_no_truncate before truncate on app.alert_audit
    for each statement execute function app.alert_audit_append_only();

-- --- operators' view: active alerts with their handling -------------------------------------
create or replace view ops.active_alert as
select a.alert_id, a.device_id, a.alert_type, a.severity, a.channel, a.raised_at,
       case when app.patient_reported_alert(a.alert_type) then null else a.value end as value,
       a.threshold,
       case when app.patient_reported_alert(a.alert_type) then 'patient report (clinic only)'
            else a.message end as message,
       h.acknowledged_at, h.acknowledged_by, h.resolved_at, h.escalated_order
from alert a left join alert_handling h using (alert_id)
where a.cleared_at is null;
comment on view ops.active_alert is
    'Alerts raised and not yet cleared, with acknowledgement and escalation; patient-reported ones '
    '(discomfort, skin reaction) without their value and words (0010).';

create view ops.alert_delivery_backlog as
select d.alert_id, d.state, v.name as receiver, v.kind, d.attempts, d.created_at, d.next_attempt_at, d.last_error
from app.alert_delivery d join app.alert_receiver v using (receiver_id)
where d.status = 'pending' and d.created_at < now() - interval '5 minutes';
comment on view ops.alert_delivery_backlog is 'Alert deliveries still waiting for their receiver after 5 minutes.';

-- --- row-level security and grants -----------------------------------------------------------
alter table alert_handling enable row level security;
create policy clinic_read on alert_handling for select to mimetic_clinic
    using (device_id = any ((select app.clinic_device_ids(current_user))::text[]));
create policy operator_read on alert_handling for select to mimetic_operator using (true);
create policy notifier_all on alert_handling to mimetic_notifier using (true) with check (true);
create policy notifier_read on device for select to mimetic_notifier using (true);

grant select on alert_handling to mimetic_clinic, mimetic_operator;
grant select on ops.alert_delivery_backlog to mimetic_operator;

grant usage on schema app to mimetic_notifier;
grant select (device_id, clinic_id) on device to mimetic_notifier;
grant select on app.alert_receiver, app.alert_api_token to mimetic_notifier;
grant select, insert on app.alert_notice to mimetic_notifier;
grant select, insert, update on app.alert_delivery, alert_handling to mimetic_notifier;
grant select, insert on app.alert_audit to mimetic_notifier;

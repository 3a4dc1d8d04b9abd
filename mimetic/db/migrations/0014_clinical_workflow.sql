-- 0014: the clinical workflow (issue 14): therapy courses, device assignments, clinician
-- assessments, patient-reported outcomes (PROs), consent, and an append-only access audit.
--
--   therapy_course            a patient's prescribed course: type (fixed vocabulary), start and
--                             end dates, planned sessions, minutes per session, and for
--                             microcurrent the prescribed current limit (µA, required).
--                             A patient's courses never overlap in time.
--   device_assignment         which patient a device is with, from valid_from until valid_to
--                             (exclusive; null = still assigned). A device's assignments
--                             never overlap; a session belongs to the patient the device was
--                             assigned to at the session's start (app.device_patient_at).
--   clinical_assessment       clinician grades over time: House-Brackmann I-VI and/or the
--                             Sunnybrook composite 0-100 (optionally its three components),
--                             date and assessor.
--   pro_instrument            the PRO instruments the system accepts: score range, direction
--                             (higher is better or worse), number and range of item answers.
--   patient_reported_outcome  one completed questionnaire: instrument, total score, item
--                             answers, when, and its source (clinic entry or the patient's app).
--   consent                   per patient and purpose (care, research): given, withdrawn.
--                             Research views include only patients with research consent in
--                             force today (app.patient_pseudo is the gate every research view
--                             joins).
--   app.access_audit          append-only: every read of identifiable patient data through the
--                             project's commands and API, every change and every erasure (who,
--                             what, when). Nobody may update, delete or truncate it.
--
-- Clinic logins (mimetic_clinic) read and write their own clinic's rows of these tables
-- (row-level security: the clinic comes from the login's role membership, app.clinic_login),
-- so a clinic's own tools can run intake with the clinic's login. Erasure and everything
-- across clinics is the owner's (the `mimetic patients` commands). Researchers see the new
-- data only through de-identified, consent-gated research views (relative days, no dates).
--
-- The patient row's own fields (affected_side, etiology, onset_date, baseline grades,
-- planned_sessions, planned_minutes) stay as they are: app.refresh_session and the 0007
-- views read them. The intake service keeps planned_* equal to the patient's latest course.

-- --- vocabularies ---------------------------------------------------------------------------
-- course types: the device and comparison therapies (mimetic.domain.COURSE_TYPES)
create function app.course_types() returns text[]
language sql immutable parallel safe as $$
    select array['microcurrent', 'biofeedback_exercise', 'acupuncture', 'massage', 'usual_care']
$$;
comment on function app.course_types() is
    'Therapy course types (mimetic.domain.COURSE_TYPES); usual_care is a course without device therapy.';
grant execute on function app.course_types() to public;

-- --- therapy courses ------------------------------------------------------------------------
create table therapy_course (
    course_id           bigint generated always as identity primary key,
    patient_id          bigint not null references patient (patient_id) on delete cascade,
    therapy_type        text not null check (therapy_type = any (app.course_types())),
    start_date          date not null,
    end_date            date check (end_date >= start_date),          -- null: open-ended
    planned_sessions    smallint not null check (planned_sessions between 1 and 1000),
    minutes_per_session smallint not null check (minutes_per_session between 1 and 240),
    current_limit_ua    real check (current_limit_ua > 0 and current_limit_ua <= 5000),
    notes               text check (length(notes) <= 4000),
    created_at          timestamptz not null default now(),
    created_by          text not null default session_user,
    -- the prescribed current limit is required for microcurrent and meaningless otherwise
    constraint course_current_limit_iff_microcurrent
        check ((therapy_type = 'microcurrent') = (current_limit_ua is not null))
);
create index therapy_course_patient_idx on therapy_course (patient_id, start_date);
comment on table therapy_course is
    'A patient''s prescribed therapy course: type, dates, planned sessions and minutes per session, '
    'prescribed current limit in µA (microcurrent only). A patient''s courses do not overlap.';

-- --- device assignments ---------------------------------------------------------------------
create table device_assignment (
    assignment_id bigint generated always as identity primary key,
    device_id     text not null references device (device_id) on delete cascade,
    patient_id    bigint not null references patient (patient_id) on delete cascade,
    valid_from    timestamptz not null,
    valid_to      timestamptz check (valid_to > valid_from),            -- exclusive; null: open
    created_at    timestamptz not null default now(),
    created_by    text not null default session_user
);
create index device_assignment_device_idx on device_assignment (device_id, valid_from);
create index device_assignment_patient_idx on device_assignment (patient_id);
comment on table device_assignment is
    'Which patient a device is with: [valid_from, valid_to), valid_to null while assigned. '
    'A device''s assignments do not overlap.';

-- No overlaps, without an extension (btree_gist): the check locks the parent row (device or
-- patient) first, so two concurrent writers for one device or patient are serialised and the
-- second sees the first's committed row.
create function app.no_overlap_check() returns trigger
language plpgsql security definer set search_path = pg_catalog, public, app as $$
declare clash bigint;
begin
    if tg_table_name = 'device_assignment' then
        perform 1 from public.device where device_id = new.device_id for update;
        select a.assignment_id into clash from public.device_assignment a
        where a.device_id = new.device_id and a.assignment_id <> new.assignment_id
          and tstzrange(a.valid_from, a.valid_to, '[)') && tstzrange(new.valid_from, new.valid_to, '[)')
        limit 1;
        if clash is not null then
            raise exception 'device % is already assigned in that period (assignment %)', new.device_id, clash
                using errcode = 'exclusion_violation';
        end if;
        -- the device and the patient must belong to one clinic
        if not exists (select 1 from public.device d join public.patient p on p.clinic_id = d.clinic_id
                       where d.device_id = new.device_id and p.patient_id = new.patient_id) then
            raise exception 'device % and the patient belong to different clinics', new.device_id
                using errcode = 'check_violation';
        end if;
    else
        perform 1 from public.patient where patient_id = new.patient_id for update;
        select c.course_id into clash from public.therapy_course c
        where c.patient_id = new.patient_id and c.course_id <> new.course_id
          and daterange(c.start_date, c.end_date, '[]') && daterange(new.start_date, new.end_date, '[]')
        limit 1;
        if clash is not null then
            raise exception 'the patient already has a course in that period (course %)', clash
                using errcode = 'exclusion_violation';
        end if;
    end if;
    return new;
end $$;
revoke all on function app.no_overlap_check() from public;

create trigger device_assignment_no_overlap before insert or update on device_assignment
    for each row execute function app.no_overlap_check();
create trigger therapy_course_no_overlap before insert or update on therapy_course
    for each row execute function app.no_overlap_check();

-- a device outlives its patient's erasure
alter table device drop constraint device_patient_id_fkey,
    add constraint device_patient_id_fkey foreign key (patient_id) references patient (patient_id)
        on delete set null;

-- device.patient_id mirrors the assignment in force now (the gateway and older views read it)
create function app.sync_device_patient() returns trigger
language plpgsql security definer set search_path = pg_catalog, public, app as $$
declare d text := coalesce(new.device_id, old.device_id);
begin
    update public.device set patient_id = (
        select a.patient_id from public.device_assignment a
        where a.device_id = d and a.valid_from <= now() and (a.valid_to is null or a.valid_to > now())
        order by a.valid_from desc limit 1)
    where device_id = d;
    return null;
end $$;
revoke all on function app.sync_device_patient() from public;
create trigger device_assignment_sync after insert or update or delete on device_assignment
    for each row execute function app.sync_device_patient();

create function app.device_patient_at(p_device_id text, p_at timestamptz) returns bigint
language sql stable security definer set search_path = pg_catalog, public as $$
    select a.patient_id from public.device_assignment a
    where a.device_id = p_device_id and a.valid_from <= p_at and (a.valid_to is null or a.valid_to > p_at)
    order by a.valid_from desc limit 1
$$;
comment on function app.device_patient_at(text, timestamptz) is
    'The patient a device was assigned to at a time (null: unassigned): a session''s patient.';
revoke all on function app.device_patient_at(text, timestamptz) from public;
grant execute on function app.device_patient_at(text, timestamptz) to mimetic_ingest, mimetic_clinic;

-- --- clinician assessments ------------------------------------------------------------------
create table clinical_assessment (
    assessment_id          bigint generated always as identity primary key,
    patient_id             bigint not null references patient (patient_id) on delete cascade,
    assessed_on            date not null,
    assessor               text not null check (length(assessor) between 1 and 200),
    hb_grade               smallint check (hb_grade between 1 and 6),              -- House-Brackmann I-VI
    sunnybrook             smallint check (sunnybrook between 0 and 100),          -- composite
    sunnybrook_resting     smallint check (sunnybrook_resting between 0 and 20),   -- resting symmetry x5
    sunnybrook_voluntary   smallint check (sunnybrook_voluntary between 20 and 100), -- voluntary movement x4
    sunnybrook_synkinesis  smallint check (sunnybrook_synkinesis between 0 and 15),
    notes                  text check (length(notes) <= 4000),
    created_at             timestamptz not null default now(),
    created_by             text not null default session_user,
    constraint assessment_has_a_grade check (hb_grade is not null or sunnybrook is not null),
    -- components: all or none, and then composite = voluntary - resting - synkinesis
    constraint sunnybrook_components_all_or_none
        check (num_nulls(sunnybrook_resting, sunnybrook_voluntary, sunnybrook_synkinesis) in (0, 3)),
    constraint sunnybrook_composite_from_components
        check (sunnybrook_resting is null
               or sunnybrook = sunnybrook_voluntary - sunnybrook_resting - sunnybrook_synkinesis)
);
create index clinical_assessment_patient_idx on clinical_assessment (patient_id, assessed_on);
comment on table clinical_assessment is
    'Clinician grades over time: House-Brackmann (1-6 = I-VI, 1 normal) and Sunnybrook composite '
    '(0-100, 100 normal; = voluntary 20-100 - resting 0-20 - synkinesis 0-15 when components given).';

-- --- patient-reported outcomes --------------------------------------------------------------
create table pro_instrument (
    instrument        text primary key check (instrument ~ '^[a-z][a-z0-9_]{1,31}$'),
    name              text not null,
    score_min         numeric not null,
    score_max         numeric not null check (score_max > score_min),
    higher_is_better  boolean not null,
    items             smallint not null check (items between 1 and 100),
    item_min          smallint not null,
    item_max          smallint not null check (item_max >= item_min),
    description       text not null
);
comment on table pro_instrument is
    'PRO instruments accepted: total-score range and direction, number and range of item answers.';
insert into pro_instrument values
    ('face', 'Facial Clinimetric Evaluation (FaCE) scale', 0, 100, true, 15, 1, 5,
     'Kahn et al. 2001: 15 items on a 1-5 scale; total 0-100, 100 = best facial function and quality of life.'),
    ('saq', 'Synkinesis Assessment Questionnaire', 20, 100, false, 9, 1, 5,
     'Mehta et al. 2007: 9 items on a 1-5 scale; total = item sum / 45 x 100 (20-100), higher = more synkinesis.'),
    ('grc', 'Global rating of change', -7, 7, true, 1, -7, 7,
     'Jaeschke et al. 1989: one answer from -7 (a very great deal worse) through 0 (no change) to +7 '
     '(a very great deal better) since the start of therapy.');

create table patient_reported_outcome (
    pro_id       bigint generated always as identity primary key,
    patient_id   bigint not null references patient (patient_id) on delete cascade,
    instrument   text not null references pro_instrument (instrument),
    score        numeric(6, 2) not null,
    item_answers smallint[],                                  -- in item order; null: total only
    answered_at  timestamptz not null,
    source       text not null check (source in ('clinic', 'app')),
    session_id   uuid,                                        -- the session an app answer came with
    device_id    text,                                        -- the device an app answer came from
    entered_by   text,                                        -- clinic entry: who typed it in
    created_at   timestamptz not null default now(),
    constraint pro_one_answer_per_time
        unique (patient_id, instrument, answered_at)          -- a re-delivered app event is one answer
);
create index patient_reported_outcome_patient_idx on patient_reported_outcome (patient_id, answered_at);
comment on table patient_reported_outcome is
    'Completed PRO questionnaires: instrument (pro_instrument gives range and direction), total score, '
    'item answers, when, source (clinic entry or the patient''s app, with session and device).';

create function app.pro_check() returns trigger
language plpgsql security definer set search_path = pg_catalog, public as $$
declare i public.pro_instrument;
begin
    select * into i from public.pro_instrument where instrument = new.instrument;
    if new.score < i.score_min or new.score > i.score_max then
        raise exception '% score % is outside % .. %', new.instrument, new.score, i.score_min, i.score_max
            using errcode = 'check_violation';
    end if;
    if new.item_answers is not null then
        if cardinality(new.item_answers) <> i.items or array_ndims(new.item_answers) <> 1 then
            raise exception '% has % items, got %', new.instrument, i.items, cardinality(new.item_answers)
                using errcode = 'check_violation';
        end if;
        if exists (select 1 from unnest(new.item_answers) x
                   where x is null or x < i.item_min or x > i.item_max) then
            raise exception '% item answers must be % .. %', new.instrument, i.item_min, i.item_max
                using errcode = 'check_violation';
        end if;
    end if;
    return new;
end $$;
revoke all on function app.pro_check() from public;
create trigger patient_reported_outcome_check before insert or update on patient_reported_outcome
    for each row execute function app.pro_check();

-- --- consent --------------------------------------------------------------------------------
create table consent (
    consent_id   bigint generated always as identity primary key,
    patient_id   bigint not null references patient (patient_id) on delete cascade,
    purpose      text not null check (purpose in ('care', 'research')),
    given_on     date not null,
    withdrawn_on date check (withdrawn_on >= given_on),
    document_ref text check (length(document_ref) <= 200),   -- where the signed form is kept
    recorded_by  text not null default session_user,
    created_at   timestamptz not null default now(),
    withdrawn_recorded_at timestamptz
);
create unique index consent_one_open_idx on consent (patient_id, purpose) where withdrawn_on is null;
comment on table consent is
    'Consent per patient and purpose (care, research): in force from given_on until withdrawn_on '
    '(exclusive). A new consent after a withdrawal is a new row; history is kept.';

create function app.has_consent(p_patient_id bigint, p_purpose text, p_on date default current_date)
returns boolean
language sql stable security definer set search_path = pg_catalog, public as $$
    select exists (select 1 from public.consent c
                   where c.patient_id = p_patient_id and c.purpose = p_purpose and c.given_on <= p_on
                     and (c.withdrawn_on is null or c.withdrawn_on > p_on))
$$;
comment on function app.has_consent(bigint, text, date) is
    'Whether the patient''s consent for the purpose (care, research) is in force on the date.';
revoke all on function app.has_consent(bigint, text, date) from public;
grant execute on function app.has_consent(bigint, text, date) to mimetic_clinic;

-- the research gate: every research view joins app.patient_pseudo (0004, 0006, 0007)
create or replace view app.patient_pseudo as
select p.patient_id,
       'R-' || left(encode(sha256(convert_to(s.value || ':patient:' || p.patient_id, 'UTF8')), 'hex'), 12) as research_id,
       'S-' || left(encode(sha256(convert_to(s.value || ':clinic:' || p.clinic_id, 'UTF8')), 'hex'), 8) as site_id
from patient p cross join app.secret s
where s.name = 'pseudonym_salt'
  -- inline, not app.has_consent(): a view's function calls are checked against the reader
  and exists (select 1 from consent c
              where c.patient_id = p.patient_id and c.purpose = 'research' and c.given_on <= current_date
                and (c.withdrawn_on is null or c.withdrawn_on > current_date));
comment on view app.patient_pseudo is
    'Research pseudonyms of the patients whose research consent is in force today: the consent gate '
    'of every research view.';

-- --- access audit ---------------------------------------------------------------------------
create table app.access_audit (
    audit_id    bigint generated always as identity primary key,
    time        timestamptz not null default clock_timestamp(),
    db_user     text not null default session_user,     -- the database login (set by the trigger)
    actor       text not null check (length(actor) between 1 and 200),   -- person or token name
    channel     text not null check (channel in ('cli', 'api', 'demo', 'app')),
    clinic_id   text,
    action      text not null check (action in ('read', 'create', 'update', 'delete', 'export', 'erase')),
    object      text not null check (object ~ '^[a-z_]{1,40}$'),   -- patient, report, export, course, ...
    patient_id  bigint,                                   -- no foreign key: the row outlives an erasure
    detail      text not null default '' check (length(detail) <= 2000)   -- never identifying data
);
create index access_audit_patient_idx on app.access_audit (patient_id, time);
create index access_audit_time_idx on app.access_audit (time);
comment on table app.access_audit is
    'Append-only: reads of identifiable patient data, changes and erasures through the project''s commands '
    'and API (who, what, when). Carries the internal patient number only, never a code or a name.';

create function app.access_audit_stamp() returns trigger language plpgsql as $$
begin
    new.time := clock_timestamp();
    new.db_user := session_user;
    return new;
end $$;
create trigger access_audit_stamp before insert on app.access_audit
    for each row execute function app.access_audit_stamp();

create function app.access_audit_append_only() returns trigger language plpgsql as $$
begin
    raise exception 'app.access_audit is append-only (% refused)', tg_op;
end $$;
create trigger access_audit_append_only before update or delete on app.access_audit
    for each row execute function app.access_audit_append_only();
create trigger access_audit_no_truncate before truncate on app.access_audit
    for each statement execute function app.access_audit_append_only();

-- --- clinic views: courses with their sessions and adherence to the plan ---------------------
-- a session belongs to the course of its patient whose dates contain the session's start day
-- (in the clinic's time zone)
create view course_session with (security_invoker = true) as
select c.course_id, c.patient_id, so.session_id, so.therapy_type, so.started_at, so.status, so.minutes,
       so.active_minutes, so.max_stim_current_ua,
       (so.therapy_type = c.therapy_type) as matches_course_type,
       row_number() over (partition by c.course_id order by so.started_at, so.session_id) as session_number
from therapy_course c
join patient p on p.patient_id = c.patient_id
join clinic k on k.clinic_id = p.clinic_id
join session_overview so on so.patient_id = c.patient_id
where so.status in ('ended', 'timed_out')
  and (so.started_at at time zone k.timezone)::date >= c.start_date
  and (c.end_date is null or (so.started_at at time zone k.timezone)::date <= c.end_date);
comment on view course_session is
    'Finished sessions of each course (start day within the course dates, clinic time zone), numbered; '
    'matches_course_type is false for e.g. an assessment session inside a microcurrent course.';

create view course_adherence with (security_invoker = true) as
select c.course_id, c.patient_id, p.clinic_id, p.code as patient_code, c.therapy_type, c.start_date, c.end_date,
       c.planned_sessions, c.minutes_per_session, c.current_limit_ua,
       count(cs.session_id) filter (where cs.matches_course_type) as sessions_done,
       count(cs.session_id) filter (where cs.matches_course_type
                                    and cs.minutes >= c.minutes_per_session * 0.9) as sessions_full_length,
       round(coalesce(sum(cs.minutes) filter (where cs.matches_course_type), 0)::numeric, 1) as total_minutes,
       round((avg(cs.minutes) filter (where cs.matches_course_type))::numeric, 1) as mean_minutes,
       round(100.0 * count(cs.session_id) filter (where cs.matches_course_type) / c.planned_sessions, 1)
           as sessions_done_pct,
       round((100.0 * coalesce(sum(cs.minutes) filter (where cs.matches_course_type), 0)
              / (c.planned_sessions * c.minutes_per_session))::numeric, 1) as minutes_done_pct,
       max(cs.max_stim_current_ua) filter (where cs.matches_course_type) as max_stim_current_ua
from therapy_course c
join patient p on p.patient_id = c.patient_id
left join course_session cs on cs.course_id = c.course_id
group by c.course_id, p.clinic_id, p.code;
comment on view course_adherence is
    'Per course: sessions of the course''s therapy type done against the plan, full-length sessions '
    '(>= 90 % of the planned minutes), minutes against planned sessions x minutes, highest measured current.';

-- --- research views (de-identified, consent-gated through app.patient_pseudo) ---------------
create view research.course as
select pp.research_id, pp.site_id, c.therapy_type, c.start_date - p.onset_date as start_day_since_onset,
       c.end_date - c.start_date as planned_days, c.planned_sessions, c.minutes_per_session, c.current_limit_ua,
       row_number() over (partition by c.patient_id order by c.start_date) as course_number
from therapy_course c
join patient p on p.patient_id = c.patient_id
join app.patient_pseudo pp on pp.patient_id = c.patient_id;
comment on view research.course is
    'Therapy courses (research-consenting patients): type, start in days since onset, plan, current limit µA.';

create view research.assessment as
select pp.research_id, pp.site_id, a.assessed_on - p.onset_date as day_since_onset,
       a.assessed_on - (select min(c.start_date) from therapy_course c where c.patient_id = a.patient_id)
           as day_since_course_start,
       a.hb_grade, a.sunnybrook, a.sunnybrook_resting, a.sunnybrook_voluntary, a.sunnybrook_synkinesis
from clinical_assessment a
join patient p on p.patient_id = a.patient_id
join app.patient_pseudo pp on pp.patient_id = a.patient_id;
comment on view research.assessment is
    'Clinician grades (research-consenting patients) in days since onset and since the first course start.';

create view research.pro as
select pp.research_id, pp.site_id, r.instrument, i.score_min, i.score_max, i.higher_is_better, r.score,
       r.item_answers, r.source,
       (r.answered_at at time zone k.timezone)::date - p.onset_date as day_since_onset,
       (r.answered_at at time zone k.timezone)::date
           - (select min(c.start_date) from therapy_course c where c.patient_id = r.patient_id)
           as day_since_course_start
from patient_reported_outcome r
join pro_instrument i using (instrument)
join patient p on p.patient_id = r.patient_id
join clinic k on k.clinic_id = p.clinic_id
join app.patient_pseudo pp on pp.patient_id = r.patient_id;
comment on view research.pro is
    'Patient-reported outcomes (research-consenting patients): instrument with range and direction, score, '
    'items, source, in days since onset and since the first course start.';

-- --- row-level security and grants ----------------------------------------------------------
do $$
declare t text;
begin
    foreach t in array array['therapy_course', 'device_assignment', 'clinical_assessment',
                             'patient_reported_outcome', 'consent'] loop
        execute format('alter table %I enable row level security', t);
        -- a clinic login: its own clinic's patients' rows, read and write (no delete)
        execute format('create policy clinic_read on %I for select to mimetic_clinic '
                       'using (patient_id in (select patient_id from patient))', t);
        execute format('create policy clinic_insert on %I for insert to mimetic_clinic '
                       'with check (patient_id in (select patient_id from patient))', t);
        execute format('create policy clinic_update on %I for update to mimetic_clinic '
                       'using (patient_id in (select patient_id from patient)) '
                       'with check (patient_id in (select patient_id from patient))', t);
    end loop;
end $$;

-- clinic intake on the patient row and its identity (RLS by clinic, as the reads in 0005)
create policy clinic_insert on patient for insert to mimetic_clinic
    with check (clinic_id = any ((select app.clinic_ids(current_user))::text[]));
create policy clinic_update on patient for update to mimetic_clinic
    using (clinic_id = any ((select app.clinic_ids(current_user))::text[]))
    with check (clinic_id = any ((select app.clinic_ids(current_user))::text[]));
create policy clinic_insert on patient_identity for insert to mimetic_clinic
    with check (patient_id in (select patient_id from patient));
create policy clinic_update on patient_identity for update to mimetic_clinic
    using (patient_id in (select patient_id from patient))
    with check (patient_id in (select patient_id from patient));

grant insert (clinic_id, code, etiology, affected_side, onset_date, baseline_hb_grade, baseline_sunnybrook,
              planned_sessions, planned_minutes) on patient to mimetic_clinic;
grant update (etiology, affected_side, onset_date, baseline_hb_grade, baseline_sunnybrook, planned_sessions,
              planned_minutes) on patient to mimetic_clinic;
grant insert, update on patient_identity to mimetic_clinic;
grant select, insert, update on therapy_course, device_assignment, clinical_assessment,
    patient_reported_outcome, consent to mimetic_clinic;
grant select on pro_instrument, course_session, course_adherence to mimetic_clinic;

-- the audit: a clinic login appends rows for its own clinic; nobody but the owner reads it
alter table app.access_audit enable row level security;
create policy clinic_append on app.access_audit for insert to mimetic_clinic
    with check (clinic_id = any ((select app.clinic_ids(current_user))::text[]));
grant insert (actor, channel, clinic_id, action, object, patient_id, detail) on app.access_audit to mimetic_clinic;

-- ingest (the sink): PROs sent by the patient's app as session events; insert only (a re-delivered
-- event is skipped by ON CONFLICT DO NOTHING, which needs no read)
create policy ingest_write on patient_reported_outcome for insert to mimetic_ingest with check (true);
grant insert (patient_id, instrument, score, item_answers, answered_at, source, session_id, device_id)
    on patient_reported_outcome to mimetic_ingest;
grant select on pro_instrument to mimetic_ingest;

grant select on research.course, research.assessment, research.pro to mimetic_researcher;

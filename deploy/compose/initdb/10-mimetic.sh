#!/bin/sh
# First start of the database container only (docker-entrypoint-initdb.d), as its superuser:
# what `mimetic migrate` may not do as the owner role, as deploy/k8s does at bootstrap.
# The owner `mimetic` (no superuser) owns the database and runs the migrations; each
# service logs in as its own role, a member of a group the migrations grant to. Passwords
# come from the compose secrets. Changing one later: ALTER ROLE by hand, then the file.
set -eu
pw() { sed "s/'/''/g" "/run/secrets/$1"; }
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<SQL
create extension if not exists timescaledb;
create role mimetic login password '$(pw pg_owner_password)';
alter database mimetic owner to mimetic;
alter schema public owner to mimetic;
create role mimetic_ingest nologin;
create role mimetic_gateway nologin;
create role mimetic_clinic nologin;
create role mimetic_researcher nologin;
create role mimetic_operator nologin;
create role mimetic_notifier nologin;
create role mimetic_gw login password '$(pw pg_gw_password)' in role mimetic_gateway;
create role mimetic_sink login password '$(pw pg_sink_password)' in role mimetic_ingest;
create role mimetic_notify login password '$(pw pg_notify_password)' in role mimetic_notifier;
revoke connect, temporary on database mimetic from public;
grant connect on database mimetic to mimetic, mimetic_ingest, mimetic_gateway, mimetic_clinic,
    mimetic_researcher, mimetic_operator, mimetic_notifier;
grant temporary on database mimetic to mimetic_ingest;
SQL

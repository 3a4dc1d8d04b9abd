"""Set-up steps that need the admin superuser; no service ever logs in with it.

The owner role (MIMETIC_PG_USER) is no superuser: it owns the schema, runs the
migrations and the jobs. What it may not do is done here as MIMETIC_PG_ADMIN_USER:

1. convert a cluster whose owner is still a superuser (stacks made before the
   admin role existed): create the admin role, then take SUPERUSER, CREATEDB,
   CREATEROLE, REPLICATION and BYPASSRLS from the owner;
2. create the group roles and the service logins (roles are cluster-wide);
3. create the database, owned by the owner, and the timescaledb extension in it
   (not a trusted extension: it needs a superuser);
4. database ACL: nothing for PUBLIC; CONNECT for the groups, TEMPORARY for the
   ingest group (the sink's COPY staging tables), for every database the owner
   has; the `postgres` and `template1` databases get no PUBLIC CONNECT either.

Every step is idempotent. Concurrent runs (several test sessions) are serialised
by an advisory lock taken in the `postgres` database.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import psycopg
from psycopg import sql

from mimetic.config import Settings

#: group roles (NOLOGIN); people and services log in with members of one of them
GROUPS = {
    "ingest": "mimetic_ingest",
    "gateway": "mimetic_gateway",
    "clinic": "mimetic_clinic",
    "researcher": "mimetic_researcher",
    "operator": "mimetic_operator",
    "notifier": "mimetic_notifier",
}
_LOCK_KEY = 0x6D696D61  # 'mima'


class AdminUnavailable(RuntimeError):
    """No way to log in as the admin superuser from here (no password, owner no superuser)."""


def admin_password_file(s: Settings) -> Path:
    return s.secrets_dir / "pg-admin-password"


def login_password_file(s: Settings, role: str) -> Path:
    return s.secrets_dir / f"pg-role-{role}"


def secret_file(path: Path, rotate: bool = False) -> str:
    """The secret in `path` (mode 0600), generated first when missing or when `rotate`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    if rotate:
        path.unlink(missing_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass  # another process made it first: use theirs
    else:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(24) + "\n")
    return path.read_text().strip()


def _connect(s: Settings, user: str, password: str, dbname: str) -> psycopg.Connection:
    conn = psycopg.connect(host=s.pg_host, port=s.pg_port, user=user, password=password, dbname=dbname,
                           autocommit=True, connect_timeout=5, **s.pg_ssl_params())
    # statements here carry passwords: never let a failing one into the server log
    if conn.execute("select rolsuper from pg_roles where rolname = current_user").fetchone()[0]:
        conn.execute("set log_min_error_statement = panic")
    return conn


def connect_admin(s: Settings, dbname: str = "postgres") -> psycopg.Connection:
    """A connection as the admin superuser, creating that role first on a cluster whose owner
    is still a superuser. Raises AdminUnavailable where neither works."""
    if s.pg_admin_user == s.pg_user:
        raise AdminUnavailable("MIMETIC_PG_ADMIN_USER must differ from MIMETIC_PG_USER")
    password = s.resolved_pg_admin_password()
    if password is not None:
        try:
            return _connect(s, s.pg_admin_user, password, dbname)
        except psycopg.OperationalError as exc:
            if "authentication failed" not in str(exc):
                raise
    _create_admin_as_owner(s)
    password = s.resolved_pg_admin_password()
    assert password is not None
    return _connect(s, s.pg_admin_user, password, dbname)


def _create_admin_as_owner(s: Settings) -> None:
    """Old clusters: the owner is the bootstrap superuser and no admin role exists yet."""
    try:
        conn = _connect(s, s.pg_user, s.resolved_pg_password(), "postgres")
    except (psycopg.OperationalError, RuntimeError) as exc:
        raise AdminUnavailable(f"cannot log in as {s.pg_admin_user} nor as a superuser owner: "
                               f"{str(exc).splitlines()[0]}") from None
    with conn:
        if not conn.execute("select rolsuper from pg_roles where rolname = current_user").fetchone()[0]:
            raise AdminUnavailable(
                f"cannot log in as {s.pg_admin_user} (set MIMETIC_PG_ADMIN_PASSWORD or restore "
                f"{admin_password_file(s)}) and {s.pg_user} is no superuser")
        if s.pg_admin_password is not None:
            password = s.pg_admin_password
        else:
            password = secret_file(admin_password_file(s))
        stmt = sql.SQL(" role {} superuser login password {}").format(sql.Identifier(s.pg_admin_user),
                                                                       sql.Literal(password))
        try:
            conn.execute(sql.SQL("create") + stmt)
        except (psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation):
            conn.execute(sql.SQL("alter") + stmt)   # it exists (or a concurrent run just made it)


def _demote_owner(conn: psycopg.Connection, s: Settings) -> None:
    ident = sql.Identifier(s.pg_user)
    if conn.execute("select 1 from pg_roles where rolname = %s", (s.pg_user,)).fetchone() is None:
        conn.execute(sql.SQL("create role {} login password {}").format(
            ident, sql.Literal(s.resolved_pg_password())))
    conn.execute(sql.SQL("alter role {} nosuperuser nocreatedb nocreaterole noreplication nobypassrls")
                 .format(ident))


def _ensure_groups(conn: psycopg.Connection) -> None:
    for group in GROUPS.values():
        if conn.execute("select 1 from pg_roles where rolname = %s", (group,)).fetchone() is None:
            conn.execute(sql.SQL("create role {} nologin").format(sql.Identifier(group)))


def ensure_login(conn: psycopg.Connection, s: Settings, name: str, group: str) -> None:
    """Login `name` in `group` (a GROUPS key), created when missing with the password in its
    secrets file. An existing login keeps its password: one whose file is missing here (another
    $MIMETIC_HOME on the same cluster) is refused, never silently given a new password that
    would lock out the processes using the old one."""
    path = login_password_file(s, name)
    ident = sql.Identifier(name)
    row = conn.execute("select rolsuper or rolcreaterole or rolcreatedb or rolbypassrls or rolreplication "
                       "from pg_roles where rolname = %s", (name,)).fetchone()
    if row is None:
        password = secret_file(path)
        conn.execute(sql.SQL("create role {} login password {}").format(ident, sql.Literal(password)))
    elif row[0]:
        raise RuntimeError(f"login {name} is a privileged role: pick another name")
    elif not path.exists():
        raise RuntimeError(f"login {name} exists but {path} is missing: copy it from the home that made "
                           f"it, or `mimetic roles create {name} --group {group} --rotate`")
    conn.execute(sql.SQL("grant {} to {}").format(sql.Identifier(GROUPS[group]), ident))


def service_logins(s: Settings) -> dict[str, str]:
    """login -> group of the logins the services use (none for the owner itself)."""
    wanted = {s.gateway_pg_user: "gateway", s.sink_pg_user: "ingest"}
    return {name: group for name, group in wanted.items() if name != s.pg_user}


def _restrict_database(conn: psycopg.Connection, s: Settings, dbname: str) -> None:
    """Step 4: nothing for PUBLIC; CONNECT for the owner and the groups; TEMPORARY for the owner
    and the ingest group."""
    db = sql.Identifier(dbname)
    conn.execute(sql.SQL("revoke all on database {} from public").format(db))
    conn.execute(sql.SQL("grant connect, temporary on database {} to {}").format(db, sql.Identifier(s.pg_user)))
    conn.execute(sql.SQL("grant connect on database {} to {}").format(
        db, sql.SQL(", ").join(sql.Identifier(g) for g in GROUPS.values())))
    conn.execute(sql.SQL("grant temporary on database {} to {}").format(db, sql.Identifier(GROUPS["ingest"])))


def bootstrap_cluster(s: Settings) -> None:
    """Steps 1-2, and step 4 for every database the owner already has (older stacks gave PUBLIC
    CONNECT to all of them); the maintenance databases get no PUBLIC CONNECT."""
    with connect_admin(s) as conn:
        conn.execute("select pg_advisory_lock(%s)", (_LOCK_KEY,))
        _demote_owner(conn, s)
        _ensure_groups(conn)
        for name, group in service_logins(s).items():
            ensure_login(conn, s, name, group)
        everyone = sql.SQL(", ").join(sql.Identifier(g) for g in ("public", *GROUPS.values()))
        for maintenance in ("postgres", "template1"):
            conn.execute(sql.SQL("revoke connect, temporary on database {} from {}").format(
                sql.Identifier(maintenance), everyone))
        owned = conn.execute("select d.datname from pg_database d join pg_roles r on r.oid = d.datdba "
                             "where r.rolname = %s and not d.datistemplate and d.datallowconn "
                             "and d.datname <> 'postgres'", (s.pg_user,)).fetchall()
        for (dbname,) in owned:
            _restrict_database(conn, s, dbname)


def prepare_database(s: Settings) -> None:
    """Steps 1-4 for `s.pg_database`: everything the owner needs before `migrate`."""
    bootstrap_cluster(s)
    with connect_admin(s) as conn:
        conn.execute("select pg_advisory_lock(%s)", (_LOCK_KEY,))
        if conn.execute("select 1 from pg_database where datname = %s", (s.pg_database,)).fetchone() is None:
            conn.execute(sql.SQL("create database {} owner {}").format(sql.Identifier(s.pg_database),
                                                                        sql.Identifier(s.pg_user)))
        _restrict_database(conn, s, s.pg_database)
    with connect_admin(s, s.pg_database) as conn:
        conn.execute("create extension if not exists timescaledb")


def drop_database(s: Settings) -> None:
    """Drop `s.pg_database` (disconnecting its sessions) if it exists; under the same lock as
    `bootstrap_cluster`, whose grants would otherwise meet a database vanishing under them."""
    with connect_admin(s) as conn:
        conn.execute("select pg_advisory_lock(%s)", (_LOCK_KEY,))
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(s.pg_database)))


def try_prepare_database(s: Settings) -> str:
    """prepare_database where an admin login is available; says what it did."""
    try:
        prepare_database(s)
    except AdminUnavailable as exc:
        return f"database set-up skipped ({exc}); a DBA must have made roles and extension"
    return f"database {s.pg_database}: roles, extension and CONNECT grants in place"

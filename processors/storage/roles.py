"""Login roles for the group roles, with generated passwords.

Passwords are generated here, set with CREATE/ALTER ROLE (PostgreSQL hashes a plain
PASSWORD with password_encryption = scram-sha-256, the default) and written to
``$MIMETIC_HOME/secrets/pg-role-<name>`` (mode 0600). They never enter the repository
or the logs. Roles are made by the admin superuser (``mimetic.db.admin``): the owner
role has no CREATEROLE.

A clinic login is bound to its clinic by a row in ``app.clinic_login``; row-level
security then limits it to that clinic's rows.

The services' logins (gateway, sink) are chosen in one place, :func:`service_dsn`.
"""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
from psycopg import sql

from mimetic.config import Settings
from mimetic.db import admin
from mimetic.db.admin import GROUPS

__all__ = ["GROUPS", "RoleRefused", "create_login", "ensure_login", "drop_login", "list_logins", "login_dsn", "password_file",
           "role_password", "service_dsn", "gateway_dsn", "sink_dsn"]

_NAME = re.compile(r"^[a-z][a-z0-9_]{2,62}$")


class RoleRefused(ValueError):
    """The role exists (without --rotate) or is one `roles create` never touches."""


def password_file(s: Settings, role: str) -> Path:
    return admin.login_password_file(s, role)


def role_password(s: Settings, role: str) -> str:
    path = password_file(s, role)
    if not path.exists():
        raise RuntimeError(f"no password for role {role}: run `mimetic roles create` (expected {path})")
    return path.read_text().strip()


def login_dsn(s: Settings, role: str) -> str:
    """DSN of a login role made by :func:`create_login` (its password from the secrets dir)."""
    return s.db_dsn(user=role, password=role_password(s, role))


def service_dsn(s: Settings, login: str, group: str) -> str:
    """DSN of a service's login (a member of `group`); the owner's own name means the owner.
    A login without a password file here is made (or given a new password) first."""
    if login == s.pg_user:
        return s.db_dsn()
    if not password_file(s, login).exists():
        with admin.connect_admin(s) as conn:
            admin.ensure_login(conn, s, login, group)
    return login_dsn(s, login)


def gateway_dsn(s: Settings) -> str:
    """The gateway's database login: reads device credentials and channel maps, nothing else."""
    return service_dsn(s, s.gateway_pg_user, "gateway")


def notifier_dsn(s: Settings) -> str:
    """The notifier's database login: its alert delivery tables, devices' clinics (mimetic_notifier)."""
    return service_dsn(s, s.notify_pg_user, "notifier")


def sink_dsn(s: Settings) -> str:
    """The sink's database login: writes the derived tables (mimetic_ingest)."""
    return service_dsn(s, s.sink_pg_user, "ingest")


def _refuse_reserved(s: Settings, conn: psycopg.Connection, name: str) -> bool:
    """Raise for roles `roles create` must never touch; returns whether `name` exists."""
    if name in {s.pg_user, s.pg_admin_user, *GROUPS.values()}:
        raise RoleRefused(f"{name} is the owner, the admin or a group role: `roles create` leaves it alone")
    row = conn.execute("select rolsuper or rolcreaterole or rolcreatedb or rolbypassrls or rolreplication "
                       "from pg_roles where rolname = %s", (name,)).fetchone()
    if row is not None and row[0]:
        raise RoleRefused(f"{name} is a privileged role: `roles create` leaves it alone")
    return row is not None


def _check_request(name: str, group: str, clinic_id: str | None) -> None:
    if not _NAME.match(name):
        raise ValueError(f"role name {name!r}: lower-case letters, digits and _, 3-63 characters")
    if group not in GROUPS:
        raise ValueError(f"group must be one of {sorted(GROUPS)}")
    if (group == "clinic") != (clinic_id is not None):
        raise ValueError("clinic logins need --clinic, other groups must not have one")


def _bind_clinic(s: Settings, name: str, clinic_id: str | None) -> None:
    if clinic_id is None:
        return
    with psycopg.connect(s.db_dsn(), autocommit=True) as conn:
        conn.execute(
            "insert into app.clinic_login (role_name, clinic_id) values (%s, %s) "
            "on conflict (role_name) do update set clinic_id = excluded.clinic_id",
            (name, clinic_id),
        )


def ensure_login(s: Settings, name: str, group: str, clinic_id: str | None = None) -> Path:
    """A tool's login (Grafana data sources, exports): made when missing, else kept with its
    password; member of `group` and bound to `clinic_id` in this database. Returns the password file."""
    _check_request(name, group, clinic_id)
    with admin.connect_admin(s) as conn:
        _refuse_reserved(s, conn, name)
        admin.ensure_login(conn, s, name, group)
    _bind_clinic(s, name, clinic_id)
    return password_file(s, name)


def create_login(s: Settings, name: str, group: str, clinic_id: str | None = None,
                 rotate: bool = False) -> Path:
    """Create login role `name` in `group` (ingest|gateway|clinic|researcher|operator).

    Returns the password file. An existing role is refused unless `rotate`: then it gets a
    new password (and the group and clinic given). The owner, the admin, the group roles
    and privileged roles are always refused. Clinic logins need `clinic_id` (must exist
    in `clinic`).
    """
    _check_request(name, group, clinic_id)
    path = password_file(s, name)
    with admin.connect_admin(s) as conn:
        exists = _refuse_reserved(s, conn, name)
        if exists and not rotate:
            raise RoleRefused(f"role {name} exists: pass --rotate to give it a new password")
        password = admin.secret_file(path, rotate=True)
        with conn.transaction():
            ident = sql.Identifier(name)
            verb = "alter" if exists else "create"
            conn.execute(sql.SQL(verb + " role {} login password {}").format(ident, sql.Literal(password)))
            conn.execute(sql.SQL("grant {} to {}").format(sql.Identifier(GROUPS[group]), ident))
    _bind_clinic(s, name, clinic_id)
    return path


def drop_login(s: Settings, name: str) -> None:
    with psycopg.connect(s.db_dsn(), autocommit=True) as conn:
        conn.execute("delete from app.clinic_login where role_name = %s", (name,))
    with admin.connect_admin(s) as conn:
        _refuse_reserved(s, conn, name)
        conn.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(name)))
    password_file(s, name).unlink(missing_ok=True)


def list_logins(s: Settings) -> list[tuple[str, str, str | None]]:
    """(login, group, clinic_id) of every member of the group roles."""
    with psycopg.connect(s.db_dsn(), autocommit=True) as conn:
        return conn.execute(
            """
            select m.rolname, g.rolname, l.clinic_id
            from pg_auth_members am
            join pg_roles g on g.oid = am.roleid
            join pg_roles m on m.oid = am.member
            left join app.clinic_login l on l.role_name = m.rolname
            where g.rolname = any(%s) order by 1
            """,
            (list(GROUPS.values()),),
        ).fetchall()

"""Login roles for the four groups of migration 0005, with generated passwords.

Passwords are generated here, set with ALTER ROLE (sent as a scram-sha-256 verifier
would be nicer; PostgreSQL hashes a plain PASSWORD with password_encryption =
scram-sha-256, the default) and written to ``$MIMETIC_HOME/secrets/pg-role-<name>``
(mode 0600). They never enter the repository or the logs.

A clinic login is bound to its clinic by a row in ``app.clinic_login``; row-level
security then limits it to that clinic's rows.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

import psycopg
from psycopg import sql

from mimetic.config import Settings

GROUPS = {
    "ingest": "mimetic_ingest",
    "clinic": "mimetic_clinic",
    "researcher": "mimetic_researcher",
    "operator": "mimetic_operator",
}
_NAME = re.compile(r"^[a-z][a-z0-9_]{2,62}$")


def password_file(s: Settings, role: str) -> Path:
    return s.secrets_dir / f"pg-role-{role}"


def role_password(s: Settings, role: str) -> str:
    path = password_file(s, role)
    if not path.exists():
        raise RuntimeError(f"no password for role {role}: run `mimetic roles create` (expected {path})")
    return path.read_text().strip()


def login_dsn(s: Settings, role: str) -> str:
    """DSN of a login role made by :func:`create_login` (its password from the secrets dir)."""
    return s.db_dsn(user=role, password=role_password(s, role))


def create_login(s: Settings, name: str, group: str, clinic_id: str | None = None,
                 rotate: bool = False) -> Path:
    """Create (or update) login role `name` in `group` (ingest|clinic|researcher|operator).

    Returns the password file. An existing password is kept unless `rotate`.
    Clinic logins need `clinic_id` (must exist in `clinic`).
    """
    if not _NAME.match(name):
        raise ValueError(f"role name {name!r}: lower-case letters, digits and _, 3-63 characters")
    if group not in GROUPS:
        raise ValueError(f"group must be one of {sorted(GROUPS)}")
    if (group == "clinic") != (clinic_id is not None):
        raise ValueError("clinic logins need --clinic, other groups must not have one")
    path = password_file(s, name)
    os.chmod(s.private_dir("secrets"), 0o700)
    if rotate or not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(24) + "\n")
    password = path.read_text().strip()
    with psycopg.connect(s.db_dsn(), autocommit=True) as conn, conn.transaction():
        exists = conn.execute("select 1 from pg_roles where rolname = %s", (name,)).fetchone()
        ident = sql.Identifier(name)
        if not exists:
            conn.execute(sql.SQL("create role {} login password {}").format(ident, sql.Literal(password)))
        else:
            conn.execute(sql.SQL("alter role {} login password {}").format(ident, sql.Literal(password)))
        conn.execute(sql.SQL("grant {} to {}").format(sql.Identifier(GROUPS[group]), ident))
        if clinic_id is not None:
            conn.execute(
                "insert into app.clinic_login (role_name, clinic_id) values (%s, %s) "
                "on conflict (role_name) do update set clinic_id = excluded.clinic_id",
                (name, clinic_id),
            )
    return path


def drop_login(s: Settings, name: str) -> None:
    with psycopg.connect(s.db_dsn(), autocommit=True) as conn:
        conn.execute("delete from app.clinic_login where role_name = %s", (name,))
        conn.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(name)))
    password_file(s, name).unlink(missing_ok=True)


def list_logins(s: Settings) -> list[tuple[str, str, str | None]]:
    """(login, group, clinic_id) of every login member of the four groups."""
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

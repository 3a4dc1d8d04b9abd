"""Where a command looked, and where else to look: for errors that find nothing.

A newcomer's first trap is the database: the demo writes to its own database
while every other command reads `MIMETIC_PG_DATABASE` (default `mimetic`). So an
error that finds nothing names the database, server and login it used, and lists
the demo databases on the same server with the exact command line to read one.
The demo marks its databases with a comment (`DEMO_COMMENT_PREFIX`), which one
catalog query can read without connecting to each database.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import psycopg

from mimetic.config import REPO_ROOT, Settings

DEMO_COMMENT_PREFIX = "mimetic demo"
DEMO_DATABASE = "mimetic_demo"
MAX_LISTED = 5


@dataclass(frozen=True)
class DemoDatabase:
    """A database the demo made, with the comment it left (when, what size)."""

    name: str
    comment: str


def place(s: Settings, login: str | None = None) -> str:
    """'database NAME on HOST:PORT as LOGIN': where a command read."""
    return f"database {s.pg_database} on {s.pg_host}:{s.pg_port} as {login or s.pg_user}"


def demo_databases(s: Settings) -> list[DemoDatabase]:
    """Databases on the server that the demo made (newest comment first); [] if unreachable."""
    try:
        admin = s.model_copy(update={"pg_database": "postgres"})
        with psycopg.connect(admin.db_dsn(), autocommit=True, connect_timeout=5) as conn:
            rows = conn.execute(
                "select datname, shobj_description(oid, 'pg_database') from pg_database "
                "where not datistemplate and (shobj_description(oid, 'pg_database') like %s or datname = %s) "
                "order by 2 desc nulls last", (DEMO_COMMENT_PREFIX + "%", DEMO_DATABASE)).fetchall()
    except (psycopg.Error, RuntimeError):
        return []
    return [DemoDatabase(name, comment or "the demo's database") for name, comment in rows]


def mimetic_command() -> str:
    """How the user runs the `mimetic` command from here: `bin/mimetic` (relative to the
    working directory when inside the repository, else absolute)."""
    wrapper = REPO_ROOT / "bin" / "mimetic"
    rel = os.path.relpath(wrapper)
    return rel if not rel.startswith("..") else str(wrapper)


def command_with_database(database: str, argv: list[str] | None = None) -> str:
    """The command line being run, pointed at `database` (any --database given replaced)."""
    args = list(sys.argv[1:] if argv is None else argv)
    out: list[str] = []
    skip = False
    for a in args:
        if skip:
            skip = False
            continue
        if a in ("--database", "-d"):
            skip = True
            continue
        if a.startswith("--database="):
            continue
        out.append(a)
    return shlex.join([mimetic_command(), "--database", database, *out])


def elsewhere(s: Settings, argv: list[str] | None = None) -> str:
    """A hint naming the demo databases on this server and how to read one."""
    found = [d for d in demo_databases(s) if d.name != s.pg_database]
    how = ("Choose a database with the global option `--database NAME` "
           "(or MIMETIC_PG_DATABASE).")
    if not found:
        return how
    names = ", ".join(d.name for d in found[:MAX_LISTED])
    return (f"Demo data is in {names} ({found[0].comment}). Try:\n"
            f"  {command_with_database(found[0].name, argv)}")


def nothing_found(what: str, s: Settings, login: str | None = None, argv: list[str] | None = None) -> str:
    """'WHAT in database ... as LOGIN.' plus where else to look."""
    return f"{what} in {place(s, login)}.\n{elsewhere(s, argv)}"


def repo_relative(path: Path) -> str:
    """`path` as the user should type it from the working directory."""
    rel = os.path.relpath(path)
    return rel if not rel.startswith("..") else str(path)

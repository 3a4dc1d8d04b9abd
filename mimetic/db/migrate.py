"""Versioned SQL migrations: `NNNN_name.sql`, applied in order, each once.

Each migration runs in its own transaction under an advisory lock, so two
`mimetic migrate` runs at once cannot interleave. An applied migration is
recorded with its checksum; editing it afterwards is refused (write a new one).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x6D696D65  # 'mime'


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text()

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


class MigrationError(RuntimeError):
    pass


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        m = _NAME.match(path.name)
        if not m:
            raise MigrationError(f"migration file {path.name} is not named NNNN_name.sql")
        found.append(Migration(int(m.group(1)), m.group(2), path))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration versions in {directory}")
    return found


def _ensure_ledger(conn: psycopg.Connection) -> None:
    conn.execute(
        """
        create table if not exists schema_migration (
            version    integer primary key,
            name       text not null,
            checksum   text not null,
            applied_at timestamptz not null default now()
        )
        """
    )


def applied(conn: psycopg.Connection) -> dict[int, str]:
    _ensure_ledger(conn)
    return {v: c for v, c in conn.execute("select version, checksum from schema_migration")}


def migrate(dsn: str, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Apply what is pending; returns the migrations applied by this call."""
    pending_done: list[Migration] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("select pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            done = applied(conn)
            for mig in discover(directory):
                if mig.version in done:
                    if done[mig.version] != mig.checksum:
                        raise MigrationError(
                            f"migration {mig.path.name} changed after it was applied; "
                            "never edit an applied migration: add a new one"
                        )
                    continue
                with conn.transaction():
                    conn.execute(mig.sql)
                    conn.execute(
                        "insert into schema_migration (version, name, checksum) values (%s, %s, %s)",
                        (mig.version, mig.name, mig.checksum),
                    )
                pending_done.append(mig)
        finally:
            conn.execute("select pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return pending_done

"""Database helpers shared by the stack, the demo, the benchmarks and the tests."""

from __future__ import annotations

from mimetic.config import Settings
from mimetic.db.admin import drop_database, prepare_database

__all__ = ["drop_database", "fresh_database", "prepare_database"]


def fresh_database(s: Settings) -> None:
    """Drop and create `s.pg_database` (owned by the owner role, timescaledb created, CONNECT
    only for the mimetic roles, service logins in place): an empty database for a demo,
    benchmark or test run, ready for `migrate`."""
    drop_database(s)
    prepare_database(s)

"""Database helpers shared by the stack, the demo, the benchmarks and the tests."""

from __future__ import annotations

import psycopg
from psycopg import sql

from mimetic.config import Settings


def _admin_dsn(s: Settings) -> str:
    return s.model_copy(update={"pg_database": "postgres"}).db_dsn()


def drop_database(s: Settings) -> None:
    """Drop `s.pg_database` (disconnecting its sessions) if it exists."""
    with psycopg.connect(_admin_dsn(s), autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(s.pg_database)))


def fresh_database(s: Settings) -> None:
    """Drop and create `s.pg_database`: an empty database for a demo, benchmark or test run."""
    drop_database(s)
    with psycopg.connect(_admin_dsn(s), autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(s.pg_database)))

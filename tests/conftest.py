"""Shared fixtures. Tests that need services ask for `settings` (or `db`): the real
local stack is brought up once per pytest session (reusing a running one), with a
fresh database `mimetic_test` and topics under a per-run prefix, so runs never see
each other's data. Pure tests (DSP, parsers) ask for nothing and need no stack.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from mimetic.config import Settings


@pytest.fixture(scope="session")
def stack_settings() -> Settings:
    """The base settings with the local stack running (started if needed)."""
    from mimetic import stack

    s = Settings()
    for _line in stack.up(s):
        pass
    return s


@pytest.fixture(scope="session")
def settings(stack_settings: Settings) -> Iterator[Settings]:
    """Settings for this test run: fresh migrated database, own topic prefix, topics created."""
    from mimetic.db.migrate import migrate
    from mimetic.kafka_admin import ensure_topics

    run_id = uuid.uuid4().hex[:8]
    s = stack_settings.model_copy(
        update={"pg_database": os.environ.get("MIMETIC_TEST_DATABASE", "mimetic_test"),
                "topic_prefix": f"test-{run_id}"}
    )
    recreate_database(s)
    migrate(s.db_dsn())
    ensure_topics(s)
    yield s


def recreate_database(s: Settings) -> None:
    admin_dsn = s.model_copy(update={"pg_database": "postgres"}).db_dsn()
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(s.pg_database)))
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(s.pg_database)))


@pytest.fixture
def db(settings: Settings) -> Iterator[psycopg.Connection]:
    """A connection to the test database as the owner role (autocommit)."""
    with psycopg.connect(settings.db_dsn(), autocommit=True) as conn:
        yield conn

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

from mimetic.config import Settings
from mimetic.db import fresh_database
from mimetic.net import free_loopback_port


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
    from mimetic.kafka_admin import delete_topics, ensure_topics

    run_id = uuid.uuid4().hex[:8]
    s = stack_settings.model_copy(
        update={"pg_database": os.environ.get("MIMETIC_TEST_DATABASE", "mimetic_test"),
                "topic_prefix": f"test-{run_id}"}
    )
    fresh_database(s)
    migrate(s.db_dsn())
    ensure_topics(s)
    yield s
    delete_topics(s, f"test-{run_id}")  # the storage tests' topics share this prefix


@pytest.fixture
def db(settings: Settings) -> Iterator[psycopg.Connection]:
    """A connection to the test database as the owner role (autocommit)."""
    with psycopg.connect(settings.db_dsn(), autocommit=True) as conn:
        yield conn


@pytest.fixture
def private_stack(stack_settings: Settings) -> Iterator[Settings]:
    """Settings of a second, private stack (own home, own ports) that a test may stop,
    kill and restart without disturbing the shared one. Not started: call
    `mimetic.stack.up(s)`. Reuses the shared jar cache; stopped and wiped afterwards.
    """
    import shutil
    import tempfile
    from pathlib import Path

    from mimetic import stack

    # the private PostgreSQL runs as `postgres` under root: its home must be traversable
    base = Path("/var/lib") if os.geteuid() == 0 else None
    home = Path(tempfile.mkdtemp(prefix="mimetic-test-", dir=base))
    home.chmod(0o755)
    (home / "cache").mkdir()
    for cached in stack_settings.cache_dir.iterdir():
        (home / "cache" / cached.name).symlink_to(cached)
    kport = free_loopback_port()
    s = stack_settings.model_copy(
        update={
            "home": home,
            "kafka_bootstrap": f"127.0.0.1:{kport}",
            "kafka_controller_port": free_loopback_port(),
            "pg_port": free_loopback_port(),
            "pg_password": None,
            "kafka_heap_mb": 256,
        }
    )
    try:
        yield s
    finally:
        for _line in stack.down(s):
            pass
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def private_pg(settings: Settings, private_stack: Settings) -> Iterator[Settings]:
    """The session's settings with the database moved to a private PostgreSQL cluster (started,
    migrated; Kafka stays the shared one) that a test may stop and start with
    `mimetic.stack.postgres.stop(s)` / `.start(s)`. Stopped and wiped afterwards by `private_stack`.
    A subprocess reaches it through `s.as_env()` (home for the password, port, database).
    """
    from mimetic.db.migrate import migrate
    from mimetic.stack import postgres

    s = settings.model_copy(update={"home": private_stack.home, "pg_port": private_stack.pg_port,
                                    "pg_password": None, "pg_database": "mimetic_private"})
    postgres.start(s)
    migrate(s.db_dsn())
    yield s


def _free_cluster_ports(n_nodes: int) -> tuple[int, int]:
    """A bootstrap and a controller port such that every node's derived ports
    (`mimetic.config.KAFKA_NODE_PORT_STEP` apart) are free on 127.0.0.1 right now."""
    import random
    import socket

    from mimetic.config import KAFKA_NODE_PORT_STEP

    span = KAFKA_NODE_PORT_STEP * n_nodes
    for _ in range(200):
        kport = random.randrange(30000, 60000 - span)
        ports = [kport + KAFKA_NODE_PORT_STEP * i + d for i in range(n_nodes) for d in (0, 1)]
        try:
            socks = []
            for p in ports:
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", p))
            return kport, kport + 1
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError("no free block of loopback ports for a Kafka cluster")


@pytest.fixture
def private_cluster(private_stack: Settings) -> Iterator[Settings]:
    """Settings of a private, running 3-node Kafka cluster (broker + controller each, 320 MiB
    heap per node) in `private_stack`'s home, which a test may kill and restart node by node
    with `mimetic.stack.kafka.kill(s, node)` / `.start(s, only=node)`. PostgreSQL is not
    started: a test moves only its Kafka settings (`kafka_bootstrap`, `kafka_brokers`) over."""
    from mimetic.stack import kafka

    kport, cport = _free_cluster_ports(3)
    s = private_stack.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{kport}",
                                         "kafka_controller_port": cport, "kafka_brokers": 3,
                                         "kafka_heap_mb": 320})
    kafka.start(s)
    yield s   # private_stack stops every node and wipes the home

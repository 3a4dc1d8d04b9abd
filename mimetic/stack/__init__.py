"""The local stack: Kafka (KRaft) and PostgreSQL + TimescaleDB on loopback."""

from __future__ import annotations

from collections.abc import Iterator

from mimetic.config import Settings, private_dirs
from mimetic.stack import kafka, postgres
from mimetic.stack.procs import StackError

__all__ = ["StackError", "up", "down", "status", "reset"]


def up(s: Settings) -> Iterator[str]:
    """Install what is missing and start both services; reuse running ones."""
    mode = postgres.stack_dir_mode()
    for d in (s.home, s.run_dir, s.data_dir):
        private_dirs(d, mode)
        d.chmod(mode)
    for step in (postgres.ensure_timescaledb, postgres.start, kafka.start):
        yield step(s)


def down(s: Settings) -> list[str]:
    return [kafka.stop(s), postgres.stop(s)]


def status(s: Settings) -> list[dict]:
    return [kafka.status(s), postgres.status(s)]


def reset(s: Settings) -> list[str]:
    """Stop everything and wipe the data (the jar and build caches stay)."""
    msgs = down(s)
    kafka.wipe(s)
    postgres.wipe(s)
    msgs.append(f"wiped {s.data_dir}")
    return msgs

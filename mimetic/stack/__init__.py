"""The local stack: Kafka (KRaft) and PostgreSQL + TimescaleDB on loopback."""

from __future__ import annotations

from collections.abc import Iterator

from mimetic.config import Settings, private_dirs
from mimetic.stack import kafka, postgres
from mimetic.stack.procs import StackError

__all__ = ["StackError", "up", "down", "status", "reset"]


def up(s: Settings) -> Iterator[str]:
    """Install what is missing and start both services; reuse running ones."""
    restrict_home(s)
    for step in (postgres.ensure_timescaledb, postgres.start, kafka.start):
        yield step(s)


def restrict_home(s: Settings) -> None:
    """Home, data and run directories: traversable (the `postgres` user must reach its own
    directories under root) but not listable by other users; secrets for the owner only."""
    mode = postgres.stack_dir_mode()
    for d in (s.home, s.data_dir, s.run_dir):
        private_dirs(d, mode)
        d.chmod(mode)
    private_dirs(s.secrets_dir)
    s.secrets_dir.chmod(0o700)
    for f in s.secrets_dir.iterdir():   # files; kafka-tls/ (the secure Kafka mode's certificates)
        f.chmod(0o700 if f.is_dir() else 0o600)
    for d in s.run_dir.iterdir():   # kafka, pg, demo logs
        if d.is_dir():
            d.chmod(0o700)


def down(s: Settings) -> list[str]:
    return [kafka.stop(s), postgres.stop(s)]


def status(s: Settings) -> list[dict]:
    return [*kafka.status(s), postgres.status(s)]


def reset(s: Settings) -> list[str]:
    """Stop everything and wipe the data (the jar and build caches stay)."""
    msgs = down(s)
    kafka.wipe(s)
    postgres.wipe(s)
    msgs.append(f"wiped {s.data_dir}")
    return msgs

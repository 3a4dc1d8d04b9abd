"""Least privilege of the local stack: private files, and an older cluster (owner as superuser)
converted by `stack up` to an admin superuser plus an owner without superuser powers."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import psycopg
import pytest

from mimetic.config import Settings
from mimetic.db import admin
from mimetic.stack import kafka as kafka_stack
from mimetic.stack import postgres as pg_stack

pytestmark = pytest.mark.stack


def _tree(root: Path) -> list[Path]:
    found = [root]
    for dirpath, dirnames, filenames in os.walk(root):
        found += [Path(dirpath) / n for n in dirnames + filenames]
    return found


def _exposed(paths: list[Path]) -> list[str]:
    """Paths whose group or others may read, write or enter (sockets are guarded by their dir)."""
    out = []
    for p in paths:
        try:
            st = p.lstat()
        except FileNotFoundError:   # a segment or temp file deleted meanwhile
            continue
        if stat.S_ISSOCK(st.st_mode) or stat.S_ISLNK(st.st_mode):
            continue
        if st.st_mode & 0o077:
            out.append(f"{oct(st.st_mode & 0o777)} {p}")
    return out


def test_data_logs_segments_and_secrets_are_private(stack_settings: Settings) -> None:
    s = stack_settings
    pg, kafka = pg_stack.PgPaths.of(s), kafka_stack.KafkaPaths.of(s)
    assert pg.log_file.exists() and any(kafka.data.iterdir())
    private = [*_tree(pg.data), *_tree(pg.sock), *_tree(kafka.data), *_tree(kafka.config.parent),
               *_tree(s.secrets_dir)]
    assert _exposed(private) == []
    # the parents may be entered (the `postgres` user reaches its own directories) but not listed
    for d in (s.home, s.data_dir, s.run_dir):
        assert d.stat().st_mode & 0o066 == 0, d
    # what the broker creates from now on (new partitions, rolled segments) is private too
    pid = int(kafka.pid_file.read_text().split()[0])
    assert kafka_stack.process_umask(pid) == 0o077


def test_stack_up_converts_a_cluster_whose_owner_is_superuser(private_pg: Settings) -> None:
    s = private_pg
    # an older cluster: the owner is a superuser and this machine has no admin password
    with admin.connect_admin(s) as conn:
        conn.execute(f"alter role {s.pg_user} superuser createdb createrole")
        conn.execute(f"alter role {s.pg_admin_user} password 'forgotten'")
    admin.admin_password_file(s).unlink()
    pg_stack.start(s)
    path = admin.admin_password_file(s)
    assert path.exists() and path.stat().st_mode & 0o077 == 0
    with psycopg.connect(s.db_dsn(), autocommit=True) as conn:
        assert conn.execute("select rolsuper, rolcreatedb, rolcreaterole from pg_roles "
                            "where rolname = current_user").fetchone() == (False, False, False)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("copy (select 1) to program 'true'")
    with admin.connect_admin(s) as conn:   # the new admin password works
        assert conn.execute("select rolsuper from pg_roles where rolname = current_user").fetchone() == (True,)
    # idempotent: a second start changes nothing and needs no superuser owner
    pg_stack.start(s)
    with admin.connect_admin(s) as conn:
        conn.execute("select 1")

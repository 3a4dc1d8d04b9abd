"""The worker starts on an empty MIMETIC_HOME and makes only private directories there."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from mimetic import topics as T
from mimetic.config import Settings

from .conftest import group_members, wait_for

pytestmark = pytest.mark.stack


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_worker_starts_on_a_fresh_home(pipeline_settings: Settings, services, tmp_path: Path) -> None:
    s = pipeline_settings
    home = tmp_path / "fresh-home"          # not even the home itself exists
    worker = services("worker", "--loglevel", "info", MIMETIC_HOME=str(home))
    frames = T.RAW_FRAMES.name(s)
    every = set(range(T.RAW_FRAMES.partition_count(s)))
    wait_for(lambda: not worker.alive() or list(group_members(s, s.worker_id, frames).values()) == [every],
             90, "the worker to join its group and own every frames partition", [worker])
    assert worker.alive(), worker.log_tail()
    made = [home, home / "run", home / "run" / "faust"]
    assert {str(p): _mode(p) for p in made} == {str(p): 0o700 for p in made}
    # whatever else it made under the home is private too
    for p in home.rglob("*"):
        if p.is_dir():
            assert _mode(p) & 0o077 == 0, (p, oct(_mode(p)))

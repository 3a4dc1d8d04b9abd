"""Directories under MIMETIC_HOME are made private (pure filesystem, no services)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mimetic.config import Settings, private_dirs


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_every_new_level_is_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o000)
    try:
        s = Settings(home=tmp_path / "home")
        made = s.private_dir("run", "faust")
    finally:
        os.umask(old)
    assert made == tmp_path / "home" / "run" / "faust"
    for p in (s.home, s.run_dir, made):
        assert _mode(p) == 0o700, p


def test_existing_directories_keep_their_mode(tmp_path: Path) -> None:
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared").chmod(0o711)
    private_dirs(tmp_path / "shared" / "a" / "b")
    assert _mode(tmp_path / "shared") == 0o711
    assert _mode(tmp_path / "shared" / "a") == 0o700 and _mode(tmp_path / "shared" / "a" / "b") == 0o700
    assert private_dirs(tmp_path / "shared" / "a") == tmp_path / "shared" / "a"   # idempotent


def test_a_file_in_the_way_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "run").write_text("")
    with pytest.raises(NotADirectoryError):
        private_dirs(tmp_path / "run")

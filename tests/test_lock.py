"""requirements.lock (what `bin/mimetic` installs, with hashes) covers every dependency of
pyproject.toml, satisfies its version ranges, keeps its exact pins, and is what is installed.
After changing pyproject's dependencies: `bin/mimetic lock`."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import requires, version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+) \\$")


def locked() -> dict[str, str]:
    """Canonical name -> version of every pinned line of the lock."""
    out = {}
    for line in LOCK.read_text().splitlines():
        m = PIN.match(line)
        if m:
            out[canonicalize_name(m[1])] = m[2]
    return out


def pyproject_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]]


def test_every_locked_line_is_pinned_and_hashed() -> None:
    lines = LOCK.read_text().splitlines()
    for i, line in enumerate(lines):
        if line and not line.startswith((" ", "#")):
            assert PIN.match(line), f"not name==version: {line}"
            assert lines[i + 1].strip().startswith("--hash=sha256:"), f"no hash: {line}"
    assert len(locked()) > 50


def test_lock_covers_pyproject_and_its_ranges() -> None:
    lock = locked()
    for req in pyproject_requirements():
        name = canonicalize_name(req.name)
        assert name in lock, f"{req.name} is not in requirements.lock: run `bin/mimetic lock`"
        assert req.specifier.contains(lock[name], prereleases=True), (str(req), lock[name])
        for extra in req.extras:  # e.g. psycopg[binary,pool] -> psycopg-binary, psycopg-pool
            for dep in map(Requirement, requires(req.name) or []):
                if dep.marker is not None and dep.marker.evaluate({"extra": extra}):
                    assert canonicalize_name(dep.name) in lock, f"{dep.name} ({req.name}[{extra}])"


def test_exact_pins_match_the_lock() -> None:
    lock = locked()
    exact = {canonicalize_name(r.name): s.version for r in pyproject_requirements()
             for s in r.specifier if s.operator == "=="}
    assert {"faust-streaming", "aiokafka"} <= set(exact)
    for name, v in exact.items():
        assert lock[name] == v, (name, v, lock[name])


def test_installed_versions_are_the_locked_ones() -> None:
    """The environment is the lock (bin/mimetic re-installs when the lock changes)."""
    wrong = {name: (v, version(name)) for name, v in locked().items() if version(name) != v}
    assert not wrong, f"installed differs from requirements.lock (locked, installed): {wrong}"

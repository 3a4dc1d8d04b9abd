"""The container image's recipe (deploy/Dockerfile) agrees with the manifests that run it.
Docker cannot run on the development machines, so the image itself is not built here:
these checks read the Dockerfile and the command line the manifests give the image."""

from __future__ import annotations

import re
import tomllib

import typer.main
import yaml

from mimetic.cli import app
from mimetic.config import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"


def _instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    return [(m.group(1).upper(), m.group(2).strip())
            for m in re.finditer(r"^(\w+)\s+(.*)$", text, re.M) if not m.group(0).startswith("#")]


def test_dockerfile_is_non_root_and_installs_the_lock() -> None:
    steps = _instructions()
    froms = [arg for op, arg in steps if op == "FROM"]
    assert froms and all(f.startswith("python:3.11-slim") for f in froms)
    users = [arg for op, arg in steps if op == "USER"]
    assert users and users[-1].split(":")[0] == "10001"
    run = " ".join(arg for op, arg in steps if op == "RUN")
    assert "--require-hashes -r requirements.lock" in run and "pip install --no-deps ." in run
    assert ("ENTRYPOINT", '["mimetic"]') in steps
    gateway = yaml.safe_load((DEPLOY / "k8s/base/gateway.yaml").read_text().split("---")[0])
    assert gateway["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 10001


def test_docker_context_holds_every_package() -> None:
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    packages = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    for pattern in packages["include"]:
        assert f"!{pattern.rstrip('*')}/" in ignore, pattern
    for needed in ("pyproject.toml", "README.md", "requirements.lock"):
        assert f"!{needed}" in ignore


def _resolve(args: list[str]) -> tuple[str, ...] | None:
    """The sub-command path `args` names in the `mimetic` command, or None if it names none
    (or stops at a group that needs a sub-command; `mimetic notify` runs without one)."""
    cmd = typer.main.get_command(app)
    path: tuple[str, ...] = ()
    for arg in args:
        subs = getattr(cmd, "commands", None)
        if subs is None or arg not in subs:
            break
        cmd, path = subs[arg], (*path, arg)
    runs_alone = getattr(cmd, "commands", None) is None or getattr(cmd, "invoke_without_command", False)
    return path if path and runs_alone else None


def test_manifests_run_existing_commands() -> None:
    used: list[list[str]] = []
    for path in [*(DEPLOY / "k8s/base").glob("*.yaml"), DEPLOY / "compose/compose.yaml"]:
        for doc in yaml.safe_load_all(path.read_text()):
            used += _args(doc)
    resolved = {tuple(args): _resolve(args) for args in used}
    missing = [args for args, path in resolved.items() if path is None]
    assert not missing, f"the manifests run commands the CLI does not have: {missing}"
    assert {("gateway",), ("worker",), ("sink",), ("migrate",), ("topics",), ("jobs", "rollup"),
            ("jobs", "retention"), ("notify",)} <= set(resolved.values())


def _args(node: object) -> list[list[str]]:
    """Every container `args` (Kubernetes) and service `command` (compose) under `node`."""
    found: list[list[str]] = []
    if isinstance(node, dict):
        image = str(node.get("image", ""))
        for key in ("args", "command"):
            if isinstance(node.get(key), list) and ("mimetic" in image or "MIMETIC_IMAGE" in image):
                found.append(node[key])
        for value in node.values():
            found += _args(value)
    elif isinstance(node, list):
        for value in node:
            found += _args(value)
    return found

"""Rendering of the Kubernetes overlays for the deploy tests: `kubectl kustomize` on a copy
of deploy/k8s with freshly generated secret files (the real ones are never in the
repository), parsed into plain dicts. No cluster and no network are needed."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from mimetic.deploy import K8S_DIR, write_secret_files

OVERLAYS = ("staging", "production")
KUBECTL = "kubectl"


@dataclass(frozen=True)
class Rendered:
    """One overlay rendered: its objects and the secret files they were made from."""

    overlay: str
    objects: list[dict[str, Any]]
    secret_dir: Path

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, name: str) -> dict[str, Any]:
        found = [o for o in self.of_kind(kind) if o["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.overlay}: expected one {kind} {name}, found {len(found)}"
        return found[0]


def kubectl_kustomize(directory: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize DIR` parsed; fails (never skips) when kubectl is missing."""
    if shutil.which(KUBECTL) is None:
        pytest.fail("kubectl is not on PATH: the deploy tests render the overlays with "
                    "`kubectl kustomize` (install kubectl; CI's machine image ships it)", pytrace=False)
    out = subprocess.run([KUBECTL, "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"kubectl kustomize {directory} failed:\n{out.stderr}"
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.fixture(scope="session")
def k8s_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """deploy/k8s copied (without any local secret files), with generated secret files."""
    root = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(K8S_DIR, root, ignore=shutil.ignore_patterns("secrets"))
    for overlay in OVERLAYS:
        write_secret_files(root / "overlays" / overlay / "secrets")
    return root


@pytest.fixture(scope="session")
def rendered_all(k8s_copy: Path) -> dict[str, Rendered]:
    return {o: Rendered(o, kubectl_kustomize(k8s_copy / "overlays" / o), k8s_copy / "overlays" / o / "secrets")
            for o in OVERLAYS}


@pytest.fixture(params=OVERLAYS)
def rendered(request: pytest.FixtureRequest, rendered_all: dict[str, Rendered]) -> Rendered:
    return rendered_all[request.param]

"""Offline schema checks: built-in kinds against the Kubernetes OpenAPI schemas shipped by
`kubernetes-validate`, custom resources against the vendored CRDs (crds/), and the compose
file against the compose specification's schema (schemas/)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

HERE = Path(__file__).resolve().parent
CRD_DIR = HERE / "crds"
COMPOSE_SCHEMA = HERE / "schemas" / "compose-spec.json"
#: the oldest Kubernetes the manifests target (autoscaling/v2, policy/v1, batch/v1 CronJob)
KUBERNETES_VERSION = "1.30.0"


def validate_builtin(obj: dict[str, Any]) -> None:
    """Raise kubernetes_validate.ValidationError on a schema violation or an unknown field."""
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


@cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> openAPIV3Schema of every vendored CRD's served versions."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if version.get("served"):
                    out[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return out


def unknown_fields(obj: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Fields the schema does not declare. The API server prunes them silently (a typo in a
    field name would just vanish), so they are errors here, as with `kubectl --validate=strict`."""
    found: list[str] = []
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return found
    if isinstance(obj, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, value in obj.items():
            if props is not None and key in props:
                found += unknown_fields(value, props[key], f"{path}.{key}")
            elif isinstance(extra, dict):
                found += unknown_fields(value, extra, f"{path}.{key}")
            elif props is not None and path != ".metadata" and extra is not True:
                found.append(f"{path}.{key}")
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(obj):
            found += unknown_fields(item, schema["items"], f"{path}[{i}]")
    return found


def validate_custom(obj: dict[str, Any]) -> None:
    """Raise AssertionError unless `obj` validates against its vendored CRD schema."""
    key = (obj["apiVersion"], obj["kind"])
    schema = crd_schemas().get(key)
    assert schema is not None, f"no vendored CRD for {key}: add it under {CRD_DIR}"
    errors = sorted(jsonschema.Draft4Validator(schema).iter_errors(obj), key=str)
    assert not errors, f"{obj['kind']} {obj['metadata']['name']}: " + "; ".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)
    unknown = unknown_fields(obj, schema)
    assert not unknown, f"{obj['kind']} {obj['metadata']['name']}: unknown fields {unknown}"


def validate_compose(doc: dict[str, Any]) -> None:
    import json

    schema = json.loads(COMPOSE_SCHEMA.read_text())
    assert schema["$schema"].startswith("https://json-schema.org/draft-07/")
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=str)
    assert not errors, "; ".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)

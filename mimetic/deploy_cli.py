"""`mimetic deploy ...`: the generated parts of deploy/ (Kafka topics and users, secret files,
Grafana's provisioning ConfigMaps)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

deploy_app = typer.Typer(no_args_is_help=True, help="Generated deployment files (deploy/k8s).")

#: Grafana's provisioning ConfigMaps (names the Grafana Deployment in deploy/k8s/base mounts)
GRAFANA_PROVISIONING = {
    "mimetic-grafana-datasources": "provisioning/datasources",
    "mimetic-grafana-dashboard-providers": "provisioning/dashboards",
    "mimetic-grafana-alerting": "provisioning/alerting",
}
GRAFANA_DASHBOARDS = "mimetic-grafana-dashboards-"  # + role (clinic, researcher, operator)
GRAFANA_DASHBOARDS_ROOT = "/var/lib/grafana/dashboards/mimetic"
#: the CloudNativePG read-only service (replicas when there are, the primary otherwise)
GRAFANA_PG_HOST = "mimetic-pg-ro"


@deploy_app.command("topics")
def topics_cmd() -> None:
    """Print the Strimzi KafkaTopics (deploy/k8s/base/kafka/topics.yaml)."""
    from mimetic.deploy import settings_from_env_file, topics_yaml

    print(topics_yaml(settings_from_env_file()), end="")


@deploy_app.command("users")
def users_cmd() -> None:
    """Print the Strimzi KafkaUsers with their ACLs (deploy/k8s/base/kafka/users.yaml)."""
    from mimetic.deploy import settings_from_env_file, users_yaml

    print(users_yaml(settings_from_env_file()), end="")


@deploy_app.command("generate")
def generate_cmd(
    check: Annotated[bool, typer.Option("--check", help="Only compare; exit 1 if a file differs.")] = False,
) -> None:
    """Write every generated file of deploy/ (or check that each is up to date)."""
    from mimetic.config import REPO_ROOT
    from mimetic.deploy import generated_files

    stale = []
    for path, text in generated_files().items():
        rel = path.relative_to(REPO_ROOT)
        if path.exists() and path.read_text() == text:
            typer.echo(f"{rel}: up to date")
        elif check:
            stale.append(rel)
            typer.echo(f"{rel}: differs")
        else:
            path.write_text(text)
            typer.echo(f"{rel}: written")
    if stale:
        typer.echo("run `mimetic deploy generate`", err=True)
        raise typer.Exit(1)


@deploy_app.command("secrets")
def secrets_cmd(
    directory: Annotated[Path, typer.Argument(help="The overlay's secrets folder, e.g. "
                                              "deploy/k8s/overlays/production/secrets")],
    compose: Annotated[bool, typer.Option("--compose", help="The compose file's secrets instead "
                                          "(deploy/compose/secrets)")] = False,
) -> None:
    """Create the missing secret files (random passwords; never overwritten)."""
    from mimetic.deploy import write_secret_files

    made = write_secret_files(directory, compose=compose)
    for path in made:
        typer.echo(f"created {path}")
    if not made:
        typer.echo("every secret file exists (kept)")


def _require_tls(datasources: Path) -> None:
    """The cluster's PostgreSQL refuses connections without TLS (deploy/k8s/base/postgres)."""
    head, _, body = datasources.read_text().partition("\n")
    doc = json.loads(body)
    for ds in doc["datasources"]:
        ds["jsonData"]["sslmode"] = "require"
    datasources.write_text(head + "\n" + json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def grafana_bundle(out: Path, clinics: list[str], database: str, port: int) -> list[Path]:
    """`dashboards build` into `out`, pointed at the in-cluster database, plus a kustomization
    that turns the files into the ConfigMaps the Grafana Deployment mounts."""
    from dashboards.provisioning import FOLDERS, build

    from mimetic.config import get_settings

    s = get_settings().model_copy(update={"pg_host": GRAFANA_PG_HOST, "pg_port": port, "pg_database": database})
    written = build(out, s, clinics, GRAFANA_DASHBOARDS_ROOT)
    _require_tls(out / GRAFANA_PROVISIONING["mimetic-grafana-datasources"] / "mimetic.yaml")
    generators = []
    for name, folder in sorted(GRAFANA_PROVISIONING.items()):
        files = sorted(p.relative_to(out).as_posix() for p in (out / folder).glob("*.yaml"))
        generators.append({"name": name, "files": files})
    for role in sorted(FOLDERS):
        files = sorted(p.relative_to(out).as_posix() for p in (out / "dashboards" / role).glob("*.json"))
        generators.append({"name": GRAFANA_DASHBOARDS + role, "files": files})
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        # stable names: the Deployment mounts them by name; restart Grafana after a change
        "generatorOptions": {"disableNameSuffixHash": True,
                             "labels": {"app.kubernetes.io/part-of": "mimetic",
                                        "app.kubernetes.io/component": "grafana"}},
        "configMapGenerator": generators,
    }
    path = out / "kustomization.yaml"
    path.write_text("# generated by `mimetic deploy grafana` (JSON is YAML)\n"
                    + json.dumps(kustomization, indent=2, sort_keys=True) + "\n")
    return [*written, path]


@deploy_app.command("grafana")
def grafana_cmd(
    out: Annotated[Path, typer.Option("--out", help="Output folder (apply it with kubectl apply -k)")],
    clinic: Annotated[list[str], typer.Option("--clinic", help="Clinic id (one data source each); repeatable")],
    database: Annotated[str, typer.Option(help="Database name in the cluster")] = "mimetic",
    port: Annotated[int, typer.Option(help="PostgreSQL port of the cluster's service")] = 5432,
) -> None:
    """Build the dashboards and Grafana provisioning as ConfigMaps for deploy/k8s."""
    for path in grafana_bundle(out, clinic, database, port):
        typer.echo(str(path))


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    app.add_typer(deploy_app, name="deploy")

"""The one settings object: every knob is a `MIMETIC_*` environment variable.

Defaults point at the local stack that `mimetic stack up` runs on loopback.
The README's configuration table is generated from this class
(`mimetic config --markdown`), so the two cannot drift apart.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


def _default_home() -> Path:
    """Root runs the private PostgreSQL as the `postgres` user, which cannot enter /root."""
    if os.geteuid() == 0:
        return Path("/var/lib/mimetic")
    return Path.home() / ".mimetic"


class Settings(BaseSettings):
    """Runtime configuration; see the README table for every variable."""

    model_config = SettingsConfigDict(env_prefix="MIMETIC_", extra="ignore")

    home: Path = Field(
        default_factory=_default_home,
        description="Cache (Kafka jars, TimescaleDB build) and stack data; "
        "default /var/lib/mimetic for root, ~/.mimetic otherwise.",
    )

    # --- Kafka -----------------------------------------------------------
    kafka_bootstrap: str = Field(
        "127.0.0.1:19092", description="Kafka bootstrap servers (host:port, comma separated)."
    )
    kafka_controller_port: int = Field(
        19093, description="Local stack only: KRaft controller port on 127.0.0.1."
    )
    kafka_version: str = Field(
        "4.1.1", description="Local stack only: Apache Kafka version resolved from Maven Central."
    )
    kafka_heap_mb: int = Field(512, description="Local stack only: broker JVM heap in MiB.")
    topic_prefix: str = Field(
        "mimetic", description="Prefix of every Kafka topic name (isolates deployments and tests)."
    )
    topic_partitions: int = Field(
        6, description="Partitions of the device-keyed topics (upper bound on worker parallelism)."
    )
    topic_replication: int = Field(
        1, description="Replication factor of created topics (1 for the local single broker)."
    )

    # --- PostgreSQL / TimescaleDB -----------------------------------------
    pg_host: str = Field("127.0.0.1", description="PostgreSQL host.")
    pg_port: int = Field(15432, description="PostgreSQL port (the local stack's private cluster).")
    pg_database: str = Field("mimetic", description="Database name.")
    pg_user: str = Field("mimetic", description="Owner role used by migrations and the sink.")
    pg_password: str | None = Field(
        None,
        description="Password of MIMETIC_PG_USER; unset means the one `stack up` generated "
        "in $MIMETIC_HOME/secrets/pg-password.",
    )
    pg_bin: Path | None = Field(
        None,
        description="Local stack only: PostgreSQL bin directory; unset picks the newest "
        "/usr/lib/postgresql/NN/bin.",
    )

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def secrets_dir(self) -> Path:
        return self.home / "secrets"

    def as_env(self) -> dict[str, str]:
        """These settings as MIMETIC_* variables, for starting a subprocess with them."""
        env: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is not None:
                env[f"MIMETIC_{name.upper()}"] = str(value)
        return env

    def resolved_pg_password(self) -> str:
        if self.pg_password is not None:
            return self.pg_password
        path = self.secrets_dir / "pg-password"
        if path.exists():
            return path.read_text().strip()
        raise RuntimeError(
            f"no database password: set MIMETIC_PG_PASSWORD or run `mimetic stack up` "
            f"(which writes {path})"
        )

    def db_dsn(self, user: str | None = None, password: str | None = None) -> str:
        """libpq URL for `user` (default: the owner role)."""
        user = user or self.pg_user
        password = password if password is not None else self.resolved_pg_password()
        return (
            f"postgresql://{quote(user)}:{quote(password)}@{self.pg_host}:{self.pg_port}/"
            f"{quote(self.pg_database)}"
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def settings_markdown() -> str:
    """README table of every variable with its default and meaning."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        if field.default_factory is not None:
            default = "see meaning"
        elif field.default is None:
            default = "(unset)"
        else:
            default = f"`{field.default}`"
        rows.append(f"| `MIMETIC_{name.upper()}` | {default} | {field.description} |")
    return "\n".join(rows)

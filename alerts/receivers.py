"""Receivers and API tokens (managed by the owner role through the CLI).

A webhook receiver's signing secret is generated here, written to
``<notify secrets dir>/notify-webhook-<name>`` (mode 0600, directory 0700) and shown
once; the database keeps only the file's name (``secret_ref``). API tokens are shown
once too; the database keeps their SHA-256 (a token is 32 random bytes, so a fast hash
is enough: there is nothing to guess).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import psycopg

from mimetic.config import Settings

KINDS = ("webhook", "email")
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_EMAIL = re.compile(r"^[^@\s<>]+@[^@\s<>]+$")


class ReceiverError(ValueError):
    """A receiver or token request that cannot be done (bad value, unknown name)."""


@dataclass(frozen=True)
class Receiver:
    receiver_id: int
    name: str
    clinic_id: str | None       # None: the operators
    kind: str
    target: str
    escalation_order: int
    secret_ref: str | None
    enabled: bool

    @property
    def audience(self) -> str:
        return f"clinic {self.clinic_id}" if self.clinic_id else "operators"


RECEIVER_COLUMNS = "receiver_id, name, clinic_id, kind, target, escalation_order, secret_ref, enabled"


def secret_path(s: Settings, secret_ref: str) -> Path:
    return s.notify_secrets_path / secret_ref


def read_secret(s: Settings, secret_ref: str) -> str:
    return secret_path(s, secret_ref).read_text().strip()


def _write_secret(s: Settings, ref: str) -> str:
    d = s.notify_secrets_path
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    value = secrets.token_urlsafe(32)
    fd = os.open(d / ref, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return value


def _check_target(kind: str, target: str) -> None:
    if kind not in KINDS:
        raise ReceiverError(f"kind must be one of {KINDS}")
    if kind == "webhook" and not re.match(r"^https?://[^\s]{3,1990}$", target):
        raise ReceiverError("a webhook target is an http:// or https:// URL")
    if kind == "email" and not _EMAIL.match(target):
        raise ReceiverError("an e-mail target is an address like oncall@example.org")


def add_receiver(s: Settings, conn: psycopg.Connection, name: str, kind: str, target: str,
                 clinic_id: str | None = None, escalation_order: int = 0) -> tuple[Receiver, str | None]:
    """Create a receiver; returns it and, for a webhook, its new signing secret (shown once)."""
    if not _NAME.match(name):
        raise ReceiverError("receiver name: letters, digits, '.', '_' or '-', up to 64 characters")
    _check_target(kind, target)
    if not 0 <= escalation_order <= 100:
        raise ReceiverError("escalation order is 0..100 (0 is told first)")
    if clinic_id is not None and not conn.execute("select 1 from clinic where clinic_id = %s",
                                                  (clinic_id,)).fetchone():
        raise ReceiverError(f"no clinic {clinic_id!r}")
    if conn.execute("select 1 from app.alert_receiver where name = %s", (name,)).fetchone():
        raise ReceiverError(f"receiver {name!r} exists (remove it first)")
    ref = f"notify-webhook-{name}" if kind == "webhook" else None
    secret = _write_secret(s, ref) if ref else None
    row = conn.execute(
        f"insert into app.alert_receiver (name, clinic_id, kind, target, escalation_order, secret_ref) "
        f"values (%s, %s, %s, %s, %s, %s) returning {RECEIVER_COLUMNS}",
        (name, clinic_id, kind, target, escalation_order, ref)).fetchone()
    return Receiver(*row), secret


def list_receivers(conn: psycopg.Connection) -> list[Receiver]:
    return [Receiver(*row) for row in conn.execute(
        f"select {RECEIVER_COLUMNS} from app.alert_receiver order by clinic_id nulls first, escalation_order, name")]


def remove_receiver(s: Settings, conn: psycopg.Connection, name: str) -> None:
    """Delete a receiver, its pending deliveries and its secret file (the audit keeps its history)."""
    row = conn.execute("delete from app.alert_receiver where name = %s returning secret_ref", (name,)).fetchone()
    if row is None:
        raise ReceiverError(f"no receiver {name!r}")
    if row[0]:
        secret_path(s, row[0]).unlink(missing_ok=True)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def add_token(conn: psycopg.Connection, name: str, clinic_id: str | None = None) -> str:
    """A new API token for a person (a clinic user with clinic_id, else an operator); shown once."""
    if not re.match(r"^[A-Za-z0-9._@-]{1,64}$", name):
        raise ReceiverError("token name: letters, digits, '.', '_', '@' or '-', up to 64 characters")
    if clinic_id is not None and not conn.execute("select 1 from clinic where clinic_id = %s",
                                                  (clinic_id,)).fetchone():
        raise ReceiverError(f"no clinic {clinic_id!r}")
    token = "mnt_" + secrets.token_urlsafe(32)
    try:
        conn.execute("insert into app.alert_api_token (token_sha256, name, clinic_id) values (%s, %s, %s)",
                     (token_hash(token), name, clinic_id))
    except psycopg.errors.UniqueViolation:
        raise ReceiverError(f"token {name!r} exists (revoke it first)") from None
    return token


def revoke_token(conn: psycopg.Connection, name: str) -> None:
    if conn.execute("delete from app.alert_api_token where name = %s returning 1", (name,)).fetchone() is None:
        raise ReceiverError(f"no token {name!r}")


def list_tokens(conn: psycopg.Connection) -> list[tuple[str, str | None, object]]:
    return conn.execute("select name, clinic_id, created_at from app.alert_api_token order by name").fetchall()

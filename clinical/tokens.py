"""Bearer tokens of the clinic API (``mimetic clinic-api tokens add | list | revoke``).

A token belongs to one clinic user (its name is recorded as who acted) and names the
clinic's database login the API uses for it: a login made by ``mimetic roles create
--group clinic --clinic C``, so row-level security, not only the API, keeps the clinic
to its own patients. Only a SHA-256 of each token is kept, in a file of the secrets
directory (mode 0600), never in the repository or the database.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

import psycopg

from mimetic.config import Settings

NAME_RE = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")


class TokenError(ValueError):
    pass


@dataclass(frozen=True)
class ApiUser:
    name: str
    clinic_id: str
    login: str          # the clinic's database login
    sha256: str = ""


def tokens_file(s: Settings) -> Path:
    return s.clinic_api_tokens_file or s.private_dir("secrets") / "clinic-api-tokens.json"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def load(s: Settings) -> list[ApiUser]:
    path = tokens_file(s)
    if not path.exists():
        return []
    return [ApiUser(**u) for u in json.loads(path.read_text())]


def _save(s: Settings, users: list[ApiUser]) -> None:
    path = tokens_file(s)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump([asdict(u) for u in users], f, indent=1)
    os.replace(tmp, path)


def find(users: list[ApiUser], token: str) -> ApiUser | None:
    """The user of a presented token (constant-time comparison of the hashes)."""
    h = token_hash(token)
    found = None
    for u in users:
        if hmac.compare_digest(u.sha256, h):
            found = u
    return found


def add(s: Settings, conn: psycopg.Connection, name: str, clinic_id: str, login: str) -> str:
    """A new token (returned once) for `name` acting for `clinic_id` through database login `login`."""
    if not NAME_RE.match(name):
        raise TokenError("token name must match [A-Za-z0-9._@-]{1,64}")
    users = load(s)
    if any(u.name == name for u in users):
        raise TokenError(f"token {name} exists (revoke it first)")
    bound = conn.execute("select 1 from app.clinic_login where role_name = %s and clinic_id = %s",
                         (login, clinic_id)).fetchone()
    if bound is None:
        raise TokenError(f"{login} is no login of clinic {clinic_id}: make one with "
                         f"`mimetic roles create {login} --group clinic --clinic {clinic_id}`")
    token = secrets.token_urlsafe(32)
    _save(s, [*users, ApiUser(name=name, clinic_id=clinic_id, login=login, sha256=token_hash(token))])
    return token


def revoke(s: Settings, name: str) -> None:
    users = load(s)
    if not any(u.name == name for u in users):
        raise TokenError(f"no token {name}")
    _save(s, [u for u in users if u.name != name])

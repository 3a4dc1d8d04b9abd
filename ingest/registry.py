"""Device registry and credentials (tables of migration 0001: clinic, patient, device).

Credentials: each device gets a random 256-bit secret (``secrets.token_urlsafe(32)``),
shown once by ``mimetic devices add``; only a salted scrypt hash is stored
(``device.secret_hash`` = ``scrypt$N$r$p$salt_b64$hash_b64``, N=2^14, r=8, p=1, about
30-60 ms and 16 MiB per check). Devices authenticate with ``Authorization: Bearer
<secret>`` on every request (HTTP Basic is not offered: a device id is already in the
URL, and one scheme keeps the firmware simple). The gateway does not pay the KDF per
request: see :class:`ingest.gateway.auth.DeviceAuth` for its cache.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row

from ingest import wire

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def hash_secret(secret: str, *, n: int = SCRYPT_N) -> str:
    salt = secrets.token_bytes(16)
    dk = hashlib.scrypt(secret.encode(), salt=salt, n=n, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"scrypt${n}${SCRYPT_R}${SCRYPT_P}${b64(salt)}${b64(dk)}"


def verify_secret(secret: str, stored: str | None) -> bool:
    """Constant-time check of a presented secret against a stored scrypt hash."""
    if not stored or not secret:
        return False
    try:
        algo, n, r, p, salt, dk = stored.split("$")
        if algo != "scrypt":
            return False
        want = base64.b64decode(dk)
        got = hashlib.scrypt(secret.encode()[:1024], salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(want))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


def parse_channel_map(text: str | None) -> list[dict[str, Any]]:
    """JSON (``[{"channel":0,"muscle":"zygomaticus","side":"L"}, ...]``) or a short form
    ``zygomaticus_L,zygomaticus_R,...`` / ``zygomaticus:L,...`` (channel = position)."""
    if not text:
        return []
    text = text.strip()
    if text.startswith("["):
        raw = json.loads(text)
    else:
        raw = []
        for i, item in enumerate(x.strip() for x in text.split(",") if x.strip()):
            muscle, _, side = item.replace(":", "_").rpartition("_")
            raw.append({"channel": i, "muscle": muscle, "side": side})
    entries = [wire.ChannelMapEntry.model_validate(e) for e in raw]
    wire.check_channel_map(entries)
    return [e.model_dump(mode="json") for e in sorted(entries, key=lambda e: e.channel)]


@dataclass
class DeviceRow:
    device_id: str
    clinic_id: str
    patient_id: int | None
    fs_hz: int | None
    channel_map: list[dict[str, Any]]
    secret_hash: str | None
    status: str


DEVICE_QUERY = ("select device_id, clinic_id, patient_id, fs_hz, channel_map, secret_hash, status "
                "from device where device_id = %s")


def ensure_clinic(conn: psycopg.Connection, clinic_id: str, name: str | None = None) -> None:
    conn.execute("insert into clinic (clinic_id, name) values (%s, %s) on conflict (clinic_id) do nothing",
                 (clinic_id, name or clinic_id))


def ensure_patient(conn: psycopg.Connection, clinic_id: str, code: str, **attrs: Any) -> int:
    """The patient's id, creating the pseudonymous row if needed (attrs: etiology, affected_side, ...)."""
    row = conn.execute("select patient_id, clinic_id from patient where code = %s", (code,)).fetchone()
    if row:
        if row[1] != clinic_id:
            raise ValueError(f"patient {code} belongs to clinic {row[1]}, not {clinic_id}")
        if attrs:
            sets = ", ".join(f"{k} = %s" for k in attrs)
            conn.execute(f"update patient set {sets} where patient_id = %s", (*attrs.values(), row[0]))
        return int(row[0])
    cols = ["clinic_id", "code", *attrs]
    ph = ", ".join(["%s"] * len(cols))
    return int(conn.execute(f"insert into patient ({', '.join(cols)}) values ({ph}) returning patient_id",
                            (clinic_id, code, *attrs.values())).fetchone()[0])


def add_device(conn: psycopg.Connection, *, clinic_id: str, device_id: str, patient_code: str | None = None,
               fs_hz: int | None = None, channel_map: list[dict[str, Any]] | None = None,
               model: str | None = None, firmware: str | None = None, rotate: bool = False,
               kdf_n: int = SCRYPT_N) -> str:
    """Register a device (creating its clinic, and patient if a code is given); returns the new secret.

    An existing device is refused unless ``rotate``: then its secret is replaced, it is
    re-activated and its other given attributes updated.
    """
    if not wire.DEVICE_ID_RE.match(device_id):
        raise ValueError("device id must match [A-Za-z0-9._-]{3,64}")
    secret = new_secret()
    h = hash_secret(secret, n=kdf_n)
    with conn.transaction():
        ensure_clinic(conn, clinic_id)
        patient_id = ensure_patient(conn, clinic_id, patient_code) if patient_code else None
        exists = conn.execute("select clinic_id from device where device_id = %s for update", (device_id,)).fetchone()
        cmap = json.dumps(channel_map or [])
        if exists:
            if not rotate:
                raise ValueError(f"device {device_id} exists (use rotate to issue a new secret)")
            if exists[0] != clinic_id:
                raise ValueError(f"device {device_id} belongs to clinic {exists[0]}")
            conn.execute(
                "update device set secret_hash = %s, status = 'active', revoked_at = null, "
                "patient_id = coalesce(%s, patient_id), fs_hz = coalesce(%s, fs_hz), "
                "channel_map = case when %s::jsonb = '[]'::jsonb then channel_map else %s::jsonb end, "
                "model = coalesce(%s, model), firmware = coalesce(%s, firmware) where device_id = %s",
                (h, patient_id, fs_hz, cmap, cmap, model, firmware, device_id))
        else:
            conn.execute(
                "insert into device (device_id, clinic_id, patient_id, model, firmware, fs_hz, channel_map, secret_hash) "
                "values (%s, %s, %s, %s, %s, %s, %s::jsonb, %s)",
                (device_id, clinic_id, patient_id, model, firmware, fs_hz, cmap, h))
    return secret


def revoke_device(conn: psycopg.Connection, device_id: str) -> bool:
    cur = conn.execute("update device set status = 'revoked', revoked_at = now() "
                       "where device_id = %s and status <> 'revoked'", (device_id,))
    return cur.rowcount == 1


def list_devices(conn: psycopg.Connection, clinic_id: str | None = None) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "select d.device_id, d.clinic_id, p.code as patient, d.fs_hz, jsonb_array_length(d.channel_map) as channels, "
            "d.status, d.created_at, d.revoked_at from device d left join patient p using (patient_id) "
            "where %s::text is null or d.clinic_id = %s order by d.device_id", (clinic_id, clinic_id))
        return cur.fetchall()


def row_from_tuple(t: tuple) -> DeviceRow:
    cmap = t[4] if isinstance(t[4], list) else json.loads(t[4] or "[]")
    return DeviceRow(device_id=t[0], clinic_id=t[1], patient_id=t[2], fs_hz=t[3], channel_map=cmap,
                     secret_hash=t[5], status=t[6])

"""`mimetic devices add / list / revoke` against the real registry."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from ingest import registry
from tests.ingest.conftest import MIMETIC

pytestmark = pytest.mark.stack


def run(settings, *args):
    return subprocess.run([MIMETIC, "devices", *args], env={**os.environ, **settings.as_env()},
                          capture_output=True, text=True, timeout=120)


def test_devices_cli(settings, db):
    dev = f"cli-dev-{settings.topic_prefix}"
    p = run(settings, "add", "--clinic", "cli-clinic", "--device", dev, "--patient", f"P-{dev[-6:]}", "--fs", "2000",
            "--channel-map", "zygomaticus_L,zygomaticus_R,frontalis:L,frontalis:R", "--json")
    assert p.returncode == 0, p.stderr
    secret = json.loads(p.stdout)["secret"]
    row = db.execute("select secret_hash, status, fs_hz, channel_map, patient_id is not null from device "
                     "where device_id = %s", (dev,)).fetchone()
    assert row[0].startswith("scrypt$") and secret not in row[0]
    assert registry.verify_secret(secret, row[0]) and not registry.verify_secret(secret + "x", row[0])
    assert (row[1], row[2], row[4]) == ("active", 2000, True)
    # --patient is a dated assignment from now (the session's patient is the one at its start)
    assert db.execute("select count(*) from device_assignment where device_id = %s and valid_to is null "
                      "and valid_from <= now()", (dev,)).fetchone()[0] == 1
    assert [(c["muscle"], c["side"]) for c in row[3]] == [("zygomaticus", "L"), ("zygomaticus", "R"),
                                                          ("frontalis", "L"), ("frontalis", "R")]
    again = run(settings, "add", "--clinic", "cli-clinic", "--device", dev)
    assert again.returncode == 1 and "exists" in again.stderr
    bad = run(settings, "add", "--clinic", "cli-clinic", "--device", "x2y", "--channel-map", "biceps_L")
    assert bad.returncode == 1 and "channel-map" in bad.stderr
    listed = json.loads(run(settings, "list", "--clinic", "cli-clinic", "--json").stdout)
    assert [d["device_id"] for d in listed] == [dev] and listed[0]["channels"] == 4
    assert "secret" not in json.dumps(listed)
    assert run(settings, "revoke", dev).returncode == 0
    assert run(settings, "revoke", dev).returncode == 1
    assert db.execute("select status from device where device_id = %s", (dev,)).fetchone()[0] == "revoked"
    rot = run(settings, "add", "--clinic", "cli-clinic", "--device", dev, "--rotate", "--json")
    new = json.loads(rot.stdout)["secret"]
    row = db.execute("select secret_hash, status from device where device_id = %s", (dev,)).fetchone()
    assert row[1] == "active" and registry.verify_secret(new, row[0]) and not registry.verify_secret(secret, row[0])

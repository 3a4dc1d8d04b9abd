"""Kafka with SASL_SSL (SCRAM-SHA-512), mutual TLS and ACLs, on a real broker started by the project
in its secure mode (`stack up --kafka-security sasl_ssl`), one for the whole module.

* the pipeline end to end over SASL_SSL, each service as its own principal with its password file
  and the CA given explicitly (as a deployment does): gateway -> worker -> sink -> exactly the
  envelope rows an undisturbed run computes; the notifier consumes as its own principal and every
  readiness probe reaches Kafka; no password in any process's log, nor in the broker's command
  line or logs;
* mutual TLS: a client certificate of the stack's CA is accepted, none or one of another CA refused;
* ACLs: only the gateway's principal writes a raw topic; the worker's, the sink's and an
  authenticated principal without ACLs are refused; a wrong password fails the login.

The default PLAINTEXT path is what the rest of the suite runs on.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import trustme
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError

from ingest import wire
from ingest.runner import register_simulation, run_simulation
from ingest.simulator import Simulation
from mimetic.config import KAFKA_MTLS_PORT_OFFSET, Settings
from mimetic.kafka_admin import delete_topics, ensure_topics
from mimetic.kafka_security import client_kwargs
from mimetic.net import free_loopback_port
from mimetic.stack import kafka
from mimetic.stack import kafka_secure as ks
from mimetic.stack.kafka_layout import KafkaPaths
from mimetic.topics import RAW_FRAMES, TELEMETRY
from processors.worker.device import WorkerParams
from tests.ingest.conftest import GatewayProc

from .conftest import assert_exactly_expected, expected_envelopes, stored_envelopes, wait_for, wait_for_rows

pytestmark = [pytest.mark.stack]

SERVICES = ("mimetic-gateway", "mimetic-worker", "mimetic-sink", "mimetic-notify")


def _free_ports() -> tuple[int, int]:
    """A bootstrap port whose mutual-TLS port (+ KAFKA_MTLS_PORT_OFFSET) is free too, and a controller port."""
    import random

    for _ in range(200):
        kport = random.randrange(30000, 60000)
        ports = [kport, kport + KAFKA_MTLS_PORT_OFFSET, kport + 1]
        socks = []
        try:
            for p in ports:
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", p))
            return kport, kport + 1
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError("no free loopback ports for a Kafka node")


@pytest.fixture(scope="module")
def secure_kafka(stack_settings: Settings) -> Iterator[Settings]:
    """A private single-node broker in the secure mode (own home, free ports), started once for the
    module; stopped and wiped afterwards. Its settings carry no client security: tests choose a
    principal with `ks.service_settings` / `ks.admin_settings`."""
    base = Path("/var/lib") if os.geteuid() == 0 else None
    home = Path(tempfile.mkdtemp(prefix="mimetic-test-ks-", dir=base))
    (home / "cache").mkdir()
    for cached in stack_settings.cache_dir.iterdir():
        (home / "cache" / cached.name).symlink_to(cached)
    kport, cport = _free_ports()
    s = stack_settings.model_copy(update={
        "home": home, "kafka_bootstrap": f"127.0.0.1:{kport}", "kafka_controller_port": cport,
        "kafka_brokers": 1, "kafka_heap_mb": 320, "kafka_stack_security": "sasl_ssl",
        "topic_prefix": f"ks-{uuid.uuid4().hex[:8]}"})
    try:
        kafka.start(s)
        ensure_topics(ks.admin_settings(s), (RAW_FRAMES, TELEMETRY))
        yield s
    finally:
        kafka.stop(s)
        shutil.rmtree(home, ignore_errors=True)


async def _produce(s: Settings, topic: str) -> int:
    """One record to `topic` as `s`'s principal; its offset."""
    # not idempotent: a principal with no Write at all would be refused its producer id (a cluster
    # ACL) before any topic is named; the refusal tested is the topic's
    p = AIOKafkaProducer(bootstrap_servers=s.bootstrap_servers(), acks="all", enable_idempotence=False,
                         request_timeout_ms=5000, retry_backoff_ms=100, **client_kwargs(s))
    try:
        await asyncio.wait_for(p.start(), 20)
        md = await asyncio.wait_for(p.send_and_wait(topic, b"probe", key=b"ks-probe"), 20)
        return md.offset
    finally:
        await p.stop()


def produce(s: Settings, topic: str) -> int:
    return asyncio.run(_produce(s, topic))


# --- who may write the raw topics ------------------------------------------------------------


def test_only_the_gateway_writes_raw_topics(secure_kafka: Settings) -> None:
    raw = RAW_FRAMES.name(secure_kafka)
    assert produce(ks.service_settings(secure_kafka, "mimetic-gateway"), raw) >= 0
    for user in ("mimetic-worker", "mimetic-sink", "mimetic-notify"):
        with pytest.raises(TopicAuthorizationFailedError):
            produce(ks.service_settings(secure_kafka, user), raw)


def test_a_principal_without_acls_is_refused(secure_kafka: Settings, tmp_path: Path) -> None:
    """Authenticated by a certificate of the stack's own CA, but no ACL names it."""
    cert, key = ks.issue_client_certificate(secure_kafka, "mimetic-intruder", tmp_path)
    intruder = ks.service_settings(secure_kafka, "mimetic-gateway", mtls=True).model_copy(
        update={"kafka_ssl_certfile": cert, "kafka_ssl_keyfile": key})
    with pytest.raises(TopicAuthorizationFailedError):
        produce(intruder, RAW_FRAMES.name(secure_kafka))


def test_a_wrong_password_or_unknown_user_fails_the_login(secure_kafka: Settings, tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    gateway = ks.service_settings(secure_kafka, "mimetic-gateway")
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n")
    unknown = tmp_path / "unknown"
    unknown.write_text(ks.password_path(secure_kafka, "mimetic-gateway").read_text())
    cases = [gateway.model_copy(update={"kafka_sasl_password_file": wrong}),
             gateway.model_copy(update={"kafka_sasl_username": "mimetic-nobody",
                                        "kafka_sasl_password_file": unknown})]
    for s in cases:
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="aiokafka"), pytest.raises(KafkaConnectionError):
            produce(s, RAW_FRAMES.name(secure_kafka))
        assert "SaslAuthenticationFailed" in caplog.text, caplog.text


# --- mutual TLS ----------------------------------------------------------------------------------


def test_mutual_tls_needs_a_certificate_of_the_stack_ca(secure_kafka: Settings, tmp_path: Path) -> None:
    good = ks.service_settings(secure_kafka, "mimetic-gateway", mtls=True)
    sasl_port = int(secure_kafka.kafka_bootstrap.rsplit(":", 1)[1])
    assert good.kafka_bootstrap == f"127.0.0.1:{sasl_port + KAFKA_MTLS_PORT_OFFSET}"
    assert produce(good, TELEMETRY.name(secure_kafka)) >= 0   # the CN is the principal: the gateway's ACLs

    no_cert = good.model_copy(update={"kafka_ssl_certfile": None, "kafka_ssl_keyfile": None})
    other_ca = trustme.CA()
    impostor = other_ca.issue_cert("mimetic-gateway.invalid", common_name="mimetic-gateway")
    (tmp_path / "other.pem").write_bytes(impostor.private_key_and_cert_chain_pem.bytes())
    foreign = good.model_copy(update={"kafka_ssl_certfile": tmp_path / "other.pem",
                                      "kafka_ssl_keyfile": tmp_path / "other.pem"})
    for s in (no_cert, foreign):
        with pytest.raises(KafkaConnectionError):
            produce(s, TELEMETRY.name(secure_kafka))
    # and a broker whose certificate the client's CA did not sign is not trusted either
    other_ca.cert_pem.write_to_path(str(tmp_path / "other-ca.pem"))
    with pytest.raises(KafkaConnectionError):
        produce(good.model_copy(update={"kafka_ssl_cafile": tmp_path / "other-ca.pem"}),
                TELEMETRY.name(secure_kafka))


# --- the pipeline over SASL_SSL --------------------------------------------------------------


def _kafka_ready(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).json().get("kafka") is True
    except (requests.RequestException, ValueError):
        return False


def _service_env(secure: Settings, user: str) -> dict[str, str]:
    """What a deployment gives one service: its principal, its password file, the CA."""
    return {"MIMETIC_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "MIMETIC_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "MIMETIC_KAFKA_SASL_USERNAME": user,
            "MIMETIC_KAFKA_SASL_PASSWORD_FILE": str(ks.password_path(secure, user)),
            "MIMETIC_KAFKA_SSL_CAFILE": str(ks.TlsFiles.of(secure).ca_cert)}


@pytest.fixture
def pipeline_settings(settings: Settings, secure_kafka: Settings) -> Iterator[Settings]:
    """The session's database; this test's topics, groups and their ACLs on the secure broker. The
    test process itself stays a PLAINTEXT-configured client: it talks to Kafka only as the admin."""
    run = uuid.uuid4().hex[:8]
    ids = {"topic_prefix": f"e2e-{run}", "worker_id": f"worker-{run}", "sink_group": f"sink-{run}",
           "notify_group": f"notify-{run}"}
    s = settings.model_copy(update={**ids, "kafka_bootstrap": secure_kafka.kafka_bootstrap, "kafka_brokers": 1,
                                    "topic_replication": None})
    secure = secure_kafka.model_copy(update=ids)
    ensure_topics(ks.admin_settings(secure))
    ks.grant_acls(secure)
    yield s
    try:
        delete_topics(ks.admin_settings(secure), f"{s.topic_prefix}.", f"{s.worker_id}-")
    except Exception as exc:
        warnings.warn(f"could not delete the topics of this test: {exc!r}")


@pytest.mark.slow
def test_pipeline_end_to_end_over_sasl_ssl(pipeline_settings: Settings, secure_kafka: Settings, services) -> None:
    s, secure = pipeline_settings, secure_kafka
    prefix = "e2e-ks"
    sim = Simulation(patients=2, sessions=1, duration_s=20, seed=15, fault_prob=0.0, device_prefix=prefix)
    expected = expected_envelopes(sim, WorkerParams.from_settings(s))
    n_frames = sum(1 for i in range(len(sim.device_ids)) for r in sim.device_records(i) if r.kind == wire.KIND_FRAME)
    secrets = register_simulation(sim, s, kdf_n=2**10)
    gw = GatewayProc(s, **_service_env(secure, "mimetic-gateway"))
    procs = [services("sink", **_service_env(secure, "mimetic-sink")),
             services("worker", "--loglevel", "info", **_service_env(secure, "mimetic-worker")),
             services("notify", MIMETIC_NOTIFY_PORT=str(free_loopback_port()),
                      **_service_env(secure, "mimetic-notify"))]
    try:
        gw.wait_healthy()
        stats = asyncio.run(run_simulation(sim, s.model_copy(update={"gateway_url": gw.url}), via="gateway",
                                           secrets=secrets, transport="http"))
        acked = sum(d["by_kind"].get(wire.KIND_FRAME, 0) for d in stats["devices"].values())
        assert acked == n_frames, stats
        how = wait_for_rows(s, prefix, len(expected), 120, stall_s=45)
        assert all(p.alive() for p in procs), "\n".join(p.log_tail() for p in procs)
        assert_exactly_expected(stored_envelopes(s, prefix), expected, how)
        # every readiness probe reaches Kafka as its service's principal
        for svc, port in zip(procs, ("SINK", "WORKER", "NOTIFY")):
            url = f"http://127.0.0.1:{svc.env[f'MIMETIC_{port}_ADMIN_PORT']}/readyz"
            wait_for(lambda: _kafka_ready(url), 60, f"{svc.command[0]} to reach Kafka", [svc])
        assert _kafka_ready(gw.admin_url + "/readyz")
    finally:
        gw.stop()
        for p in procs:
            p.stop()

    logs = {"gateway": gw.log.read_text(errors="replace"), **{p.command[0]: p.log_text() for p in procs}}
    assert "SASL_SSL SCRAM-SHA-512 as mimetic-notify" in logs["notify"], logs["notify"][-2000:]
    paths = KafkaPaths.of(secure)
    for f in (paths.log_file, paths.log_file.with_suffix(".stdout")):
        logs[f.name] = f.read_text(errors="replace")
    cmdline = Path(f"/proc/{kafka.node_pid(secure, 1)}/cmdline")
    logs["broker command line"] = cmdline.read_bytes().decode(errors="replace")
    assert all(logs[name] for name in ("gateway", "sink", "worker", "notify", "server.log")), "no log to read"
    for user in ks.principals(secure):
        password = ks.password_path(secure, user).read_text().strip()
        leaked = [name for name, text in logs.items() if password in text]
        assert not leaked, f"the password of {user} is in: {leaked}"
    assert not list(paths.config.parent.glob("*.args")), "the SCRAM argument file outlived the format"

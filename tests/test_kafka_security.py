"""mimetic.kafka_security: the one place that turns the Kafka security settings into client
arguments. Pure: no broker (tests/pipeline/test_kafka_security.py runs them against one)."""

from __future__ import annotations

import ssl
from pathlib import Path

import faust
import pytest
import trustme

from mimetic.config import Settings
from mimetic.kafka_security import KafkaSecurityError, client_kwargs, describe, faust_credentials, kafka_auth
from mimetic.stack import kafka_secure as ks


def _settings(tmp_path: Path, **kw) -> Settings:
    return Settings(home=tmp_path, **kw)


def test_plaintext_adds_nothing(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    assert s.kafka_security_protocol == "PLAINTEXT"
    assert client_kwargs(s) == {} and faust_credentials(s) is None


def test_sasl_ssl_reads_the_password_file_and_never_shows_it(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    (tmp_path / "pw").write_text("s3cret-Pa55word\n")
    s = _settings(tmp_path, kafka_security_protocol="SASL_SSL", kafka_sasl_username="mimetic-sink",
                  kafka_sasl_password_file=tmp_path / "pw", kafka_ssl_cafile=tmp_path / "ca.pem")
    kw = client_kwargs(s)
    assert kw["security_protocol"] == "SASL_SSL" and kw["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kw["sasl_plain_username"] == "mimetic-sink" and kw["sasl_plain_password"] == "s3cret-Pa55word"
    ctx = kw["ssl_context"]
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    creds = faust_credentials(s)
    assert isinstance(creds, faust.SASLCredentials) and creds.password == "s3cret-Pa55word"
    for text in (repr(kafka_auth(s)), repr(creds), describe(s), repr(s)):
        assert "s3cret" not in text


def test_the_password_file_defaults_to_the_stack_secret_of_the_user(tmp_path: Path) -> None:
    s = _settings(tmp_path, kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="mimetic-worker")
    with pytest.raises(KafkaSecurityError, match="kafka-user-mimetic-worker"):
        client_kwargs(s)
    s.secrets_dir.mkdir(parents=True)
    ks.password_path(s, "mimetic-worker").write_text("pw\n")
    assert client_kwargs(s)["sasl_plain_password"] == "pw"
    with pytest.raises(KafkaSecurityError, match="MIMETIC_KAFKA_SASL_USERNAME"):
        client_kwargs(_settings(tmp_path, kafka_security_protocol="SASL_SSL"))


def test_mutual_tls_loads_the_client_certificate(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    cert = ca.issue_cert("client.invalid", common_name="mimetic-gateway")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "client.pem"))
    s = _settings(tmp_path, kafka_security_protocol="SSL", kafka_ssl_cafile=tmp_path / "ca.pem",
                  kafka_ssl_certfile=tmp_path / "client.pem", kafka_ssl_keyfile=tmp_path / "client.pem")
    kw = client_kwargs(s)
    assert kw["security_protocol"] == "SSL" and "sasl_mechanism" not in kw
    assert isinstance(faust_credentials(s), faust.SSLCredentials)
    with pytest.raises(KafkaSecurityError, match="go together"):
        client_kwargs(s.model_copy(update={"kafka_ssl_keyfile": None}))


def test_scram_credential_is_salted_not_the_password() -> None:
    value = ks.scram_credential("mimetic-gateway", "hunter2", b"0123456789abcdef", 4096)
    assert value.startswith("SCRAM-SHA-512=[name=mimetic-gateway,iterations=4096,salt=\"")
    assert "hunter2" not in value
    # PBKDF2-HMAC-SHA-512 of the password (RFC 5802 Hi()), base64: 64 bytes -> 88 characters
    salted = value.split('saltedpassword="', 1)[1].rstrip('"]')
    assert len(salted) == 88


def test_a_stack_formatted_in_one_mode_refuses_the_other(tmp_path: Path) -> None:
    from mimetic.stack.kafka import check_security
    from mimetic.stack.kafka_layout import cluster_file
    from mimetic.stack.procs import StackError

    s = _settings(tmp_path, kafka_stack_security="sasl_ssl")
    check_security(s)   # never formatted: either mode
    s.data_dir.mkdir(parents=True)
    cluster_file(s).write_text("nodes=1\nsecurity=plaintext\n")
    with pytest.raises(StackError, match="formatted with security plaintext"):
        check_security(s)
    check_security(s.model_copy(update={"kafka_stack_security": "plaintext"}))
    cluster_file(s).write_text("nodes=1\n")   # formatted before the setting existed: plaintext
    with pytest.raises(StackError):
        check_security(s)


def test_the_mutual_tls_port_must_not_collide(tmp_path: Path) -> None:
    from mimetic.config import KAFKA_MTLS_PORT_OFFSET
    from mimetic.stack.kafka_layout import nodes
    from mimetic.stack.procs import StackError

    clash = _settings(tmp_path, kafka_bootstrap="127.0.0.1:40000",
                      kafka_controller_port=40000 + KAFKA_MTLS_PORT_OFFSET)
    assert len(nodes(clash)) == 1   # plaintext: no such listener
    with pytest.raises(StackError, match="collide"):
        nodes(clash.model_copy(update={"kafka_stack_security": "sasl_ssl"}))


def test_server_properties_deny_by_default_and_map_certificates_to_principals(tmp_path: Path) -> None:
    props = dict(line.split("=", 1) for line in ks.server_properties(_settings(tmp_path), "127.0.0.1", 40000, 40001))
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"] == "User:mimetic-admin;User:mimetic-broker"
    assert props["listener.name.ssl.ssl.client.auth"] == "required"
    assert props["listener.name.controller.ssl.client.auth"] == "required"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["listeners"] == "SASL_SSL://127.0.0.1:40000,SSL://127.0.0.1:40002,CONTROLLER://127.0.0.1:40001"


def test_the_worker_app_carries_the_credentials_to_every_faust_client(tmp_path: Path) -> None:
    """Faust builds its consumers, producers and admin client with
    `credentials_to_aiokafka_auth(conf.broker_credentials, conf.ssl_context)`."""
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    from processors.worker.app import make_app

    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    (tmp_path / "pw").write_text("worker-pw")
    s = _settings(tmp_path, kafka_security_protocol="SASL_SSL", kafka_sasl_username="mimetic-worker",
                  kafka_sasl_password_file=tmp_path / "pw", kafka_ssl_cafile=tmp_path / "ca.pem")
    app = make_app(s)
    auth = credentials_to_aiokafka_auth(app.conf.broker_credentials, app.conf.ssl_context)
    assert auth["security_protocol"] == "SASL_SSL" and auth["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (auth["sasl_plain_username"], auth["sasl_plain_password"]) == ("mimetic-worker", "worker-pw")
    assert auth["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    # leader changes are seen within 10 s (aiokafka does not refresh on every retry path)
    assert app.conf.consumer_metadata_max_age_ms == app.conf.producer_metadata_max_age_ms == 10_000

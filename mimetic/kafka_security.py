"""How every Kafka client of the project authenticates: one place turns the MIMETIC_KAFKA_SECURITY_*,
_SASL_* and _SSL_* settings into aiokafka / kafka-python keyword arguments and Faust credentials.

PLAINTEXT (the default) adds nothing. SASL_SSL logs in with the process's own principal
(MIMETIC_KAFKA_SASL_USERNAME, its password read from a file); SSL with a client certificate is
mutual TLS. The password lives only in the returned objects, never in a repr, a log line or Kafka.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mimetic.config import Settings

#: the secure local stack's CA, used when MIMETIC_KAFKA_SSL_CAFILE is unset and it exists
LOCAL_CA = Path("kafka-tls") / "ca.crt"


class KafkaSecurityError(RuntimeError):
    """The security settings are incomplete (a missing password file, certificate or key)."""


@dataclass(frozen=True)
class KafkaAuth:
    """What a client presents to the brokers."""

    protocol: str
    mechanism: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False)

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")


def password_file(s: Settings) -> Path:
    """Where this process's SASL password is: the setting, else the local stack's file for its user."""
    if s.kafka_sasl_password_file is not None:
        return s.kafka_sasl_password_file
    if not s.kafka_sasl_username:
        raise KafkaSecurityError(f"MIMETIC_KAFKA_SECURITY_PROTOCOL={s.kafka_security_protocol} needs "
                                 "MIMETIC_KAFKA_SASL_USERNAME (this service's principal)")
    return s.secrets_dir / f"kafka-user-{s.kafka_sasl_username}"


def read_password(path: Path) -> str:
    """The password in `path` (one line; surrounding whitespace dropped). Its content is never quoted
    in an error."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise KafkaSecurityError(f"cannot read the Kafka SASL password file {path}: {exc.strerror}") from None
    password = text.strip()
    if not password:
        raise KafkaSecurityError(f"the Kafka SASL password file {path} is empty")
    return password


def cafile(s: Settings) -> Path | None:
    """The CA bundle that verifies the brokers (None: the system's trust store)."""
    if s.kafka_ssl_cafile is not None:
        return s.kafka_ssl_cafile
    local = s.secrets_dir / LOCAL_CA
    return local if local.exists() else None


def ssl_context(s: Settings) -> ssl.SSLContext:
    """TLS 1.2+, the brokers' certificates and host names verified, the client certificate (mutual
    TLS) loaded when MIMETIC_KAFKA_SSL_CERTFILE is set."""
    ca = cafile(s)
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca) if ca else None)
    except (OSError, ssl.SSLError) as exc:
        raise KafkaSecurityError(f"cannot load the Kafka CA bundle {ca}: {exc}") from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if (s.kafka_ssl_certfile is None) != (s.kafka_ssl_keyfile is None):
        raise KafkaSecurityError("MIMETIC_KAFKA_SSL_CERTFILE and MIMETIC_KAFKA_SSL_KEYFILE go together")
    if s.kafka_ssl_certfile is not None:
        try:
            ctx.load_cert_chain(str(s.kafka_ssl_certfile), str(s.kafka_ssl_keyfile))
        except (OSError, ssl.SSLError) as exc:
            raise KafkaSecurityError(f"cannot load the Kafka client certificate {s.kafka_ssl_certfile} "
                                     f"and key: {exc}") from None
    return ctx


def kafka_auth(s: Settings) -> KafkaAuth:
    """This process's Kafka credentials from its settings (files read now)."""
    protocol = s.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return KafkaAuth(protocol)
    ctx = ssl_context(s) if protocol in ("SSL", "SASL_SSL") else None
    if protocol == "SSL":
        return KafkaAuth(protocol, ssl_context=ctx)
    return KafkaAuth(protocol, mechanism=s.kafka_sasl_mechanism, username=s.kafka_sasl_username,
                     password=read_password(password_file(s)), ssl_context=ctx)


def client_kwargs(s: Settings) -> dict[str, Any]:
    """Keyword arguments for AIOKafkaProducer/Consumer/Client and kafka-python's clients (they share
    these names); empty for PLAINTEXT, so a default client is built exactly as before."""
    auth = kafka_auth(s)
    if auth.protocol == "PLAINTEXT":
        return {}
    kwargs: dict[str, Any] = {"security_protocol": auth.protocol}
    if auth.ssl_context is not None:
        kwargs["ssl_context"] = auth.ssl_context
    if auth.mechanism is not None:
        kwargs.update(sasl_mechanism=auth.mechanism, sasl_plain_username=auth.username,
                      sasl_plain_password=auth.password)
    return kwargs


def faust_credentials(s: Settings) -> Any:
    """The Faust app's `broker_credentials` (None for PLAINTEXT): the same principal and TLS context."""
    auth = kafka_auth(s)
    if auth.protocol == "PLAINTEXT":
        return None
    import faust

    if auth.protocol == "SSL":
        return faust.SSLCredentials(auth.ssl_context)
    return faust.SASLCredentials(username=auth.username, password=auth.password, ssl_context=auth.ssl_context,
                                 mechanism=auth.mechanism)


def describe(s: Settings) -> str:
    """One line for logs: protocol and principal, never a secret."""
    p = s.kafka_security_protocol
    if p == "PLAINTEXT":
        return "PLAINTEXT"
    if p == "SSL":
        cert = s.kafka_ssl_certfile
        return f"SSL (client certificate {cert})" if cert else "SSL (no client certificate)"
    return f"{p} {s.kafka_sasl_mechanism} as {s.kafka_sasl_username}"

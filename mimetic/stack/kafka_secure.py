"""The local broker's secure mode (MIMETIC_KAFKA_STACK_SECURITY=sasl_ssl): its listeners, its
users, certificates and ACLs.

Each node serves SASL_SSL (SCRAM-SHA-512) on its bootstrap port and TLS with a required client
certificate on the port + KAFKA_MTLS_PORT_OFFSET; the controller quorum and replication speak
mutual TLS too, as the brokers' own principal. A certificate's CN is its principal, so
`CN=mimetic-gateway` over mutual TLS and the SCRAM login `mimetic-gateway` are the same user, under
the same ACLs. The StandardAuthorizer denies whatever no ACL allows; the ACLs are those the
deployment's KafkaUsers carry (`mimetic.deploy.access`). Super users: `mimetic-admin` (topics,
ACLs, the stack's readiness check) and the brokers themselves, nobody else.

Everything is made once under $MIMETIC_HOME/secrets (0700): a password file per principal
(`kafka-user-<name>`, what MIMETIC_KAFKA_SASL_PASSWORD_FILE defaults to), and in `kafka-tls/` a CA,
the brokers' key and certificate, and a client certificate and key per principal. SCRAM users are
written into the cluster metadata when the storage is formatted (`kafka-storage format
--add-scram`) as salted passwords, passed in a 0600 argument file, never on a command line.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from mimetic.config import KAFKA_MTLS_PORT_OFFSET, Settings
from mimetic.kafka_security import LOCAL_CA

ADMIN = "mimetic-admin"
BROKER = "mimetic-broker"
SCRAM_ITERATIONS = 8192
#: a certificate's principal is its CN (`O=mimetic,CN=mimetic-gateway` -> User:mimetic-gateway)
PRINCIPAL_RULES = "RULE:^(.*,)?CN=([^,]+)(,.*)?$/$2/,DEFAULT"


def secure(s: Settings) -> bool:
    return s.kafka_stack_security == "sasl_ssl"


def principals(s: Settings) -> list[str]:
    """Every service principal of `mimetic.deploy.access` (the admin included)."""
    from mimetic.deploy import access

    return [a.user for a in access(s)]


@dataclass(frozen=True)
class TlsFiles:
    dir: Path

    @classmethod
    def of(cls, s: Settings) -> "TlsFiles":
        return cls(s.secrets_dir / LOCAL_CA.parent)

    @property
    def ca_cert(self) -> Path:
        return self.dir / LOCAL_CA.name

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def broker_pem(self) -> Path:
        """Key, certificate and CA in one PEM: the brokers' keystore (ssl.keystore.type=PEM)."""
        return self.dir / "broker.pem"

    def cert(self, user: str) -> Path:
        return self.dir / f"{user}.crt"

    def key(self, user: str) -> Path:
        return self.dir / f"{user}.key"


def password_path(s: Settings, user: str) -> Path:
    return s.secrets_dir / f"kafka-user-{user}"


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    path.chmod(0o600)


def ensure_secrets(s: Settings, host: str) -> TlsFiles:
    """Passwords, CA, broker and client certificates: those missing are made, none is replaced."""
    from mimetic.config import private_dirs

    private_dirs(s.secrets_dir)
    for user in principals(s):
        path = password_path(s, user)
        if not path.exists():
            _write_private(path, secrets.token_urlsafe(32).encode())
    tls = TlsFiles.of(s)
    private_dirs(tls.dir)
    if not tls.ca_cert.exists():
        key, cert = _new_ca()
        _write_private(tls.ca_key, _key_pem(key))
        _write_private(tls.ca_cert, _cert_pem(cert))
    ca_key, ca_cert = _load_ca(tls)
    if not tls.broker_pem.exists():
        key, cert = _issue(ca_key, ca_cert, BROKER, server_host=host)
        _write_private(tls.broker_pem, _key_pem(key) + _cert_pem(cert) + _cert_pem(ca_cert))
    for user in principals(s):
        if not tls.cert(user).exists():
            key, cert = _issue(ca_key, ca_cert, user)
            _write_private(tls.key(user), _key_pem(key))
            _write_private(tls.cert(user), _cert_pem(cert))
    return tls


def issue_client_certificate(s: Settings, cn: str, directory: Path) -> tuple[Path, Path]:
    """A client certificate of the stack's CA for principal `cn` (its key 0600) in `directory`:
    (certificate, key). A principal without ACLs may connect, and do nothing."""
    ca_key, ca_cert = _load_ca(TlsFiles.of(s))
    key, cert = _issue(ca_key, ca_cert, cn)
    cert_path, key_path = directory / f"{cn}.crt", directory / f"{cn}.key"
    _write_private(key_path, _key_pem(key))
    _write_private(cert_path, _cert_pem(cert))
    return cert_path, key_path


def _new_ca():
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mimetic"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "mimetic local Kafka CA")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def _issue(ca_key, ca_cert, cn: str, server_host: str | None = None):
    """A key and a certificate for `cn`: client auth, and server auth for `server_host` (the brokers,
    which are clients of each other too)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH] + ([ExtendedKeyUsageOID.SERVER_AUTH] if server_host else [])
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                                  x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mimetic")]))
         .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=825))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.ExtendedKeyUsage(usages), critical=False))
    if server_host:
        names: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        try:
            ip = ipaddress.ip_address(server_host)
            if str(ip) != "127.0.0.1":
                names.append(x509.IPAddress(ip))
        except ValueError:
            if server_host != "localhost":
                names.append(x509.DNSName(server_host))
        b = b.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return key, b.sign(ca_key, hashes.SHA256())


def _load_ca(tls: TlsFiles):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(tls.ca_key.read_bytes(), password=None)
    return key, x509.load_pem_x509_certificate(tls.ca_cert.read_bytes())


def _key_pem(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert_pem(cert) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)


def scram_credential(user: str, password: str, salt: bytes, iterations: int = SCRAM_ITERATIONS) -> str:
    """One `--add-scram` value: the salted password (RFC 5802 Hi() = PBKDF2-HMAC-SHA-512), not the password."""
    salted = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return (f'SCRAM-SHA-512=[name={user},iterations={iterations},'
            f'salt="{base64.b64encode(salt).decode()}",saltedpassword="{base64.b64encode(salted).decode()}"]')


def write_scram_argfile(s: Settings, path: Path) -> Path:
    """An argument file (0600) with an `--add-scram` option per principal, one argument a line
    (`kafka-storage` reads `@file` itself, with argparse4j: no quoting)."""
    lines = []
    for user in principals(s):
        password = password_path(s, user).read_text().strip()
        lines += ["--add-scram", scram_credential(user, password, secrets.token_bytes(16))]
    _write_private(path, ("\n".join(lines) + "\n").encode())
    return path


def server_properties(s: Settings, host: str, port: int, controller_port: int) -> list[str]:
    """The listener, TLS, SASL and authorizer lines of one node's server.properties."""
    tls = TlsFiles.of(s)
    mtls = port + KAFKA_MTLS_PORT_OFFSET
    return [
        f"listeners=SASL_SSL://{host}:{port},SSL://{host}:{mtls},CONTROLLER://{host}:{controller_port}",
        f"advertised.listeners=SASL_SSL://{host}:{port},SSL://{host}:{mtls}",
        "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=CONTROLLER:SSL,SASL_SSL:SASL_SSL,SSL:SSL",
        # replication and the quorum: mutual TLS as the brokers' own principal
        "inter.broker.listener.name=SSL",
        "ssl.keystore.type=PEM",
        f"ssl.keystore.location={tls.broker_pem}",
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={tls.ca_cert}",
        "ssl.enabled.protocols=TLSv1.3,TLSv1.2",
        "ssl.endpoint.identification.algorithm=https",
        f"ssl.principal.mapping.rules={PRINCIPAL_RULES}",
        "listener.name.ssl.ssl.client.auth=required",
        "listener.name.controller.ssl.client.auth=required",
        "listener.name.sasl_ssl.ssl.client.auth=none",
        "sasl.enabled.mechanisms=SCRAM-SHA-512",
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config="
        "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found=false",
        f"super.users=User:{ADMIN};User:{BROKER}",
    ]


def admin_settings(s: Settings) -> Settings:
    """`s` as the stack's admin principal over SASL_SSL (readiness checks, topics, ACLs)."""
    return s.model_copy(update={"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "SCRAM-SHA-512",
                                "kafka_sasl_username": ADMIN, "kafka_sasl_password_file": password_path(s, ADMIN),
                                "kafka_ssl_cafile": TlsFiles.of(s).ca_cert, "kafka_ssl_certfile": None,
                                "kafka_ssl_keyfile": None})


def service_settings(s: Settings, user: str, mtls: bool = False) -> Settings:
    """`s` as service principal `user` of the local secure stack: SASL_SSL with its password file, or
    (`mtls`) TLS with its client certificate on the mutual-TLS ports."""
    tls = TlsFiles.of(s)
    if not mtls:
        return s.model_copy(update={"kafka_security_protocol": "SASL_SSL", "kafka_sasl_username": user,
                                    "kafka_sasl_password_file": password_path(s, user),
                                    "kafka_ssl_cafile": tls.ca_cert})
    bootstrap = ",".join(f"{h}:{int(p) + KAFKA_MTLS_PORT_OFFSET}"
                         for h, p in (a.rsplit(":", 1) for a in s.bootstrap_servers()))
    return s.model_copy(update={"kafka_security_protocol": "SSL", "kafka_sasl_username": None,
                                "kafka_sasl_password_file": None, "kafka_ssl_cafile": tls.ca_cert,
                                "kafka_ssl_certfile": tls.cert(user), "kafka_ssl_keyfile": tls.key(user),
                                "kafka_bootstrap": bootstrap, "kafka_brokers": 1})


def grant_acls(s: Settings) -> int:
    """Create, as the admin, the ACLs of every principal for `s`'s topic prefix, worker id and consumer
    groups (what `mimetic.deploy.acls_of` gives the deployment's KafkaUsers); idempotent. Returns
    how many bindings were asked for."""
    from kafka import KafkaAdminClient
    from kafka.admin import ACL, ACLOperation, ACLPermissionType, ACLResourcePatternType, ResourcePattern, ResourceType

    from mimetic.deploy import access, acls_of
    from mimetic.kafka_security import client_kwargs

    kinds = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP, "cluster": ResourceType.CLUSTER}
    patterns = {"literal": ACLResourcePatternType.LITERAL, "prefix": ACLResourcePatternType.PREFIXED}
    ops = {"Read": ACLOperation.READ, "Write": ACLOperation.WRITE, "Create": ACLOperation.CREATE,
           "Describe": ACLOperation.DESCRIBE, "DescribeConfigs": ACLOperation.DESCRIBE_CONFIGS}
    bindings = []
    for a in access(s):
        for acl in acls_of(a, s):
            res = acl["resource"]
            pattern = ResourcePattern(kinds[res["type"]], res["name"], patterns[res["patternType"]])
            bindings += [ACL(f"User:{a.user}", "*", ops[op], ACLPermissionType.ALLOW, pattern)
                         for op in acl["operations"]]
    a_s = admin_settings(s)
    admin = KafkaAdminClient(bootstrap_servers=a_s.bootstrap_servers(), client_id="mimetic-admin",
                             request_timeout_ms=15000, **client_kwargs(a_s))
    try:
        result = admin.create_acls(bindings)
    finally:
        admin.close()
    failed = result.get("failed", []) if isinstance(result, dict) else []
    if failed:
        raise RuntimeError(f"kafka: {len(failed)} ACLs not created: {failed[:3]}")
    return len(bindings)

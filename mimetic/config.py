"""The one settings object: every knob is a `MIMETIC_*` environment variable.

Defaults point at the local stack that `mimetic stack up` runs on loopback.
The README's configuration table is generated from this class
(`mimetic config --markdown`), so the two cannot drift apart.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import quote, urlencode

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


#: a directory the project makes (data, logs, run, secrets): its owner only
PRIVATE_DIR_MODE = 0o700


def private_dirs(path: Path, mode: int = PRIVATE_DIR_MODE) -> Path:
    """Make ``path`` and its missing parents, each new one with ``mode`` (umask aside).

    Directories that already exist keep their mode. Returns ``path``.
    """
    missing: list[Path] = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=mode)
        except FileExistsError:   # made meanwhile by another process
            continue
        d.chmod(mode)
    if not path.is_dir():
        raise NotADirectoryError(path)
    return path


#: local stack: node i (1-based) listens on the configured ports + KAFKA_NODE_PORT_STEP * (i - 1)
KAFKA_NODE_PORT_STEP = 10
#: local secure stack: each node's mutual-TLS listener is its bootstrap port + this
KAFKA_MTLS_PORT_OFFSET = 2


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
    kafka_heap_mb: int = Field(1024, description="Local stack only: JVM heap of each Kafka node in MiB.")
    kafka_brokers: int = Field(
        1, ge=1, le=9,
        description="Local stack: KRaft nodes (broker + controller each) `stack up` runs; node i "
        f"(1-based) listens on the bootstrap port + {KAFKA_NODE_PORT_STEP}*(i-1) and the controller "
        f"port + {KAFKA_NODE_PORT_STEP}*(i-1). Clients add those addresses to a one-address "
        "MIMETIC_KAFKA_BOOTSTRAP.",
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT",
        description="How every Kafka client of this process connects: PLAINTEXT (the local stack's default), "
        "SASL_SSL (TLS + SASL login: MIMETIC_KAFKA_SASL_*), SSL (TLS; with MIMETIC_KAFKA_SSL_CERTFILE/KEYFILE "
        "a client certificate: mutual TLS, the certificate's CN is the principal).",
    )
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism with SASL_SSL / SASL_PLAINTEXT."
    )
    kafka_sasl_username: str | None = Field(
        None,
        description="SASL login of this process: each service its own principal (mimetic-gateway, "
        "mimetic-worker, mimetic-sink, mimetic-notify; tools: mimetic-admin), whose Kafka ACLs allow "
        "only what it needs (README \"Kafka security\").",
    )
    kafka_sasl_password_file: Path | None = Field(
        None,
        description="File holding the SASL password (read at start, never logged); unset means "
        "$MIMETIC_HOME/secrets/kafka-user-<MIMETIC_KAFKA_SASL_USERNAME> (made by a secure `stack up`).",
    )
    kafka_ssl_cafile: Path | None = Field(
        None,
        description="PEM CA bundle that verifies the brokers (SSL / SASL_SSL); unset means the secure local "
        "stack's CA ($MIMETIC_HOME/secrets/kafka-tls/ca.crt) where it exists, else the system's trust store.",
    )
    kafka_ssl_certfile: Path | None = Field(
        None, description="PEM client certificate (chain) for mutual TLS (with MIMETIC_KAFKA_SSL_KEYFILE)."
    )
    kafka_ssl_keyfile: Path | None = Field(
        None, description="PEM private key of MIMETIC_KAFKA_SSL_CERTFILE (a file for this service only)."
    )
    kafka_stack_security: Literal["plaintext", "sasl_ssl"] = Field(
        "plaintext",
        description="Local stack only: `plaintext` (fast, loopback, no login) or `sasl_ssl`: each node's "
        f"bootstrap port speaks SASL_SSL (SCRAM-SHA-512), the port + {KAFKA_MTLS_PORT_OFFSET} TLS with "
        "required client certificates, ACLs from mimetic/deploy.py access() (StandardAuthorizer; super "
        "user: mimetic-admin). Users, passwords and certificates are made under $MIMETIC_HOME/secrets.",
    )
    topic_prefix: str = Field(
        "mimetic", description="Prefix of every Kafka topic name (isolates deployments and tests)."
    )
    topic_partitions: int = Field(
        6, description="Partitions of the device-keyed topics (upper bound on worker parallelism)."
    )
    topic_replication: int | None = Field(
        None, ge=1,
        description="Replication factor of created topics (the worker's changelogs too); unset: "
        "min(3, MIMETIC_KAFKA_BROKERS). min.insync.replicas is 2 from 3 replicas on, else 1.",
    )

    # --- PostgreSQL / TimescaleDB -----------------------------------------
    pg_host: str = Field("127.0.0.1", description="PostgreSQL host.")
    pg_port: int = Field(15432, description="PostgreSQL port (the local stack's private cluster).")
    pg_sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = Field(
        "prefer", description="libpq sslmode of every database connection (and of Grafana's data sources, where "
        "disable/allow/prefer all mean disable); verify-full in production."
    )
    pg_sslrootcert: Path | None = Field(
        None, description="PEM CA bundle that verifies the database server (sslmode verify-ca/verify-full)."
    )
    pg_server_tls_cert: Path | None = Field(
        None, description="Local stack only: the server certificate `stack up` gives PostgreSQL (with "
        "MIMETIC_PG_SERVER_TLS_KEY: ssl = on; unset: TLS off)."
    )
    pg_server_tls_key: Path | None = Field(None, description="Local stack only: the server certificate's key.")
    pg_database: str = Field("mimetic", description="Database name.")
    pg_user: str = Field(
        "mimetic",
        description="Owner role (no superuser): owns the schema, runs migrations and jobs.",
    )
    pg_password: str | None = Field(
        None,
        description="Password of MIMETIC_PG_USER; unset means the one `stack up` generated "
        "in $MIMETIC_HOME/secrets/pg-password.",
    )
    pg_admin_user: str = Field(
        "mimetic_admin",
        description="Superuser for administration only: creates databases, the timescaledb "
        "extension and roles. No service logs in with it.",
    )
    pg_admin_password: str | None = Field(
        None,
        description="Password of MIMETIC_PG_ADMIN_USER; unset means $MIMETIC_HOME/secrets/"
        "pg-admin-password (made by `stack up`). Without either, set-up steps that need "
        "it are skipped (a DBA made the database, extension and roles).",
    )
    pg_bin: Path | None = Field(
        None,
        description="Local stack only: PostgreSQL bin directory; unset picks the newest "
        "/usr/lib/postgresql/NN/bin.",
    )

    # --- storage: sink, jobs, roles (processors/sink.py, processors/storage/) ---
    sink_group: str = Field("mimetic-sink", description="Kafka consumer group of the database sink.")
    sink_batch_size: int = Field(
        5000, description="Sink: most records written in one database transaction."
    )
    sink_linger_ms: int = Field(
        50, description="Sink: longest wait to fill a batch before writing what arrived."
    )
    sink_retry_max_s: float = Field(
        10.0, description="Sink: longest back-off between retries while the database is down."
    )
    sink_pg_user: str = Field(
        "mimetic_sink",
        description="Sink: database login, a member of `mimetic_ingest` (made when missing); "
        "its password is in $MIMETIC_HOME/secrets/pg-role-<user>. The owner's name means the owner.",
    )
    sink_admin_host: str = Field(
        "127.0.0.1", description="Sink admin listener address (/livez, /readyz, /metrics); loopback."
    )
    sink_admin_port: int = Field(9182, description="Sink admin listener port (`mimetic sink`; 0: off).")
    sink_refresh_interval_s: float = Field(
        5.0,
        description="Sink: every this many seconds, recompute finished sessions whose data changed "
        "(task-window balance, per-muscle summary, synkinesis; app.refresh_session); 0 = leave it to "
        "`mimetic jobs rollup`.",
    )
    rollup_lateness_s: int = Field(
        120, description="Rollup job: only buckets older than this are rolled up (data may still arrive)."
    )
    rollup_lookback_s: int = Field(
        600, description="Rollup job: re-roll this much before the watermark to absorb late data."
    )
    retention_envelope_days: int = Field(
        90, description="Retention job: drop envelope chunks older than this many days (0 = keep)."
    )
    retention_detail_days: int = Field(
        365,
        description="Retention job: drop signal quality and stream statistics chunks older than this "
        "many days (0 = keep).",
    )
    retention_telemetry_days: int = Field(
        180, description="Retention job: drop telemetry chunks older than this many days (0 = keep)."
    )

    # --- ingest gateway (ingest/gateway/) -------------------------------------
    gateway_host: str = Field("127.0.0.1", description="Gateway listen address (loopback by default).")
    gateway_port: int = Field(8088, description="Gateway HTTP/WebSocket port.")
    gateway_pg_user: str = Field(
        "mimetic_gw",
        description="Gateway: database login, a member of `mimetic_gateway` (reads only what device "
        "authentication needs; made when missing); password in $MIMETIC_HOME/secrets/pg-role-<user>.",
    )
    gateway_url: str | None = Field(
        None, description="Base URL clients (simulate, replay) use; unset means http://GATEWAY_HOST:GATEWAY_PORT."
    )
    gateway_max_body_bytes: int = Field(
        1_048_576, description="Largest frame request body or WebSocket message in bytes (larger: 413)."
    )
    gateway_max_json_bytes: int = Field(
        65_536, description="Largest telemetry/event request body in bytes (larger: 413)."
    )
    gateway_rate_per_s: float = Field(
        200.0, description="Per-device token bucket: sustained requests (or WebSocket messages) per second (over: 429)."
    )
    gateway_rate_burst: int = Field(400, description="Per-device token bucket size (burst allowance).")
    gateway_kafka_timeout_s: float = Field(
        5.0, description="Longest wait for Kafka's acknowledgement of one record before answering 503."
    )
    gateway_retry_after_s: int = Field(2, description="Retry-After seconds sent with 503 and 429 answers.")
    gateway_auth_cache_ttl_s: float = Field(
        5.0, description="Seconds a device's registry row (status, secret hash) is cached: revocation takes effect "
        "within this time."
    )
    gateway_max_inflight: int = Field(
        5000, description="Records awaiting Kafka acknowledgement before the gateway answers 503 (back-pressure)."
    )
    gateway_linger_ms: int = Field(5, description="Kafka producer linger (batching delay) of the gateway, ms.")
    gateway_admin_host: str = Field(
        "127.0.0.1", description="Gateway admin listener address (/livez, /readyz, /healthz, /metrics); loopback."
    )
    gateway_admin_port: int = Field(9180, description="Gateway admin listener port (never the device port).")
    gateway_tls_cert: Path | None = Field(
        None, description="Gateway: PEM certificate chain; with MIMETIC_GATEWAY_TLS_KEY the device port serves "
        "HTTPS/WSS only (unset: plain HTTP, for TLS ended by a proxy in front)."
    )
    gateway_tls_key: Path | None = Field(None, description="Gateway: PEM private key of MIMETIC_GATEWAY_TLS_CERT.")
    gateway_ca_file: Path | None = Field(
        None, description="Clients of the gateway (simulate, replay): PEM CA bundle to verify an https/wss "
        "gateway with (unset: the system's trust store)."
    )
    gateway_device_bytes_per_s: int = Field(
        4_194_304, description="Per-device byte-rate token bucket on request bodies and WebSocket messages, "
        "checked before decoding (over: 429)."
    )
    gateway_device_bytes_burst: int = Field(
        8_388_608, description="Per-device byte bucket size; at least GATEWAY_MAX_BODY_BYTES is always allowed."
    )
    gateway_auth_fail_per_s: float = Field(
        0.5, description="Failed authentications per second allowed per source address and per device id; "
        "over it: 429 before any KDF or registry read."
    )
    gateway_auth_fail_burst: int = Field(10, description="Failed-authentication bucket size (per address / device).")
    gateway_auth_fail_track: int = Field(
        10_000, description="Addresses and device ids whose failed authentications are tracked (LRU; bounds memory)."
    )
    gateway_kdf_concurrency: int = Field(
        1, description="scrypt verifications run at once (in threads; the event loop stays free)."
    )
    gateway_max_buffered_bytes: int = Field(
        134_217_728, description="Request body bytes held at once over all connections; past it: 503 (memory bound)."
    )
    gateway_decode_workers: int = Field(
        1, description="Worker processes that decode large JSON bodies (over 64 KiB) off the event loop."
    )
    gateway_max_connections: int = Field(
        1000, description="Open connections on the device port; a new one over it gets 503 and is closed."
    )
    gateway_ws_per_device: int = Field(
        4, description="Open WebSocket streams per device; another handshake gets 429 (too_many_streams)."
    )
    gateway_ws_idle_s: float = Field(
        120.0, description="A WebSocket stream with no message for this long is closed (code 4408)."
    )
    gateway_header_timeout_s: float = Field(
        10.0, description="A connection must complete its request headers this long after connecting or after "
        "its previous answer (idle keep-alive too), else it is closed."
    )
    gateway_body_timeout_s: float = Field(
        15.0, description="Longest time to receive one request body (slower: 408, connection closed)."
    )
    gateway_max_header_bytes: int = Field(
        8190, description="Longest request line or header field in bytes (longer: 400)."
    )

    # --- device clock rule (ingest/wire.py check_device_clock; gateway and worker) ---
    clock_max_future_s: float = Field(
        300.0, gt=0,
        description="A frame, telemetry or event dated more than this many seconds after its receive time is "
        "refused (422 `clock_future`; the worker dead-letters it).",
    )
    clock_max_age_s: float = Field(
        604_800.0, gt=0,
        description="A frame, telemetry or event dated more than this many seconds before its receive time is "
        "refused (422 `clock_past`); 7 days lets an offline device upload a buffered session, far inside the "
        "retention horizon.",
    )

    # --- stream worker (processors/worker) -----------------------------------
    worker_id: str = Field("mimetic-worker", description="Faust application id (consumer group and changelog prefix).")
    worker_web_port: int = Field(16066, description="Worker's HTTP port on 127.0.0.1 (Faust's own web server).")
    worker_admin_host: str = Field(
        "127.0.0.1", description="Worker admin listener address (/livez, /readyz, /metrics); loopback."
    )
    worker_admin_port: int = Field(9181, description="Worker admin listener port (0: off).")
    worker_commit_interval_s: float = Field(
        1.0,
        description="How often the worker commits its input offsets (after flushing its outputs and states).",
    )
    worker_batch_max: int = Field(
        2000, description="Worker: most input records processed as one batch (one state save per device per batch)."
    )
    worker_batch_within_s: float = Field(
        0.1, description="Worker: longest wait to fill a batch before processing what has arrived (seconds)."
    )
    worker_checkpoint_interval_s: float = Field(
        1.0,
        description="Worker: how often the states of devices that changed are saved to the changelog and their "
        "input records acknowledged (a crash replays at most about this much input, plus the commit interval).",
    )
    worker_fetch_min_bytes: int = Field(
        65536,
        description="Worker: the broker holds a fetch until this many bytes are ready (or the wait below): fewer, "
        "larger fetches cost less per record.",
    )
    worker_fetch_max_wait_ms: int = Field(
        50, description="Worker: longest the broker holds a fetch for `worker_fetch_min_bytes` (adds to latency)."
    )
    worker_group_timeout_s: float = Field(
        15.0, description="Kafka group session timeout of the worker: how fast a dead worker's partitions move."
    )
    worker_stall_timeout_s: float = Field(
        300.0,
        description="A worker that processes nothing this long while frames wait exits (its supervisor restarts it).",
    )
    worker_tick_interval_s: float = Field(2.0, description="Liveness check period of the worker (seconds).")
    worker_stim_slope_uv: float = Field(
        250.0,
        description="While a frame is flagged stimulation-active, a step above this (µV per sample) starts a "
        "4 ms blank of the stimulation pulse.",
    )
    worker_hold_frames: int = Field(
        4, description="Out-of-order frames held per device while waiting for a missing one before a gap is declared."
    )
    worker_mains_hz: float = Field(
        50.0, description="Mains frequency notched with its harmonics (50 or 60) until a session states it "
        "(`mains_hz` in session_start) or shows it in its first 2 s."
    )
    worker_envelope_window_s: float = Field(0.1, description="Moving-RMS envelope window in seconds.")
    fatigue_min_s: float = Field(
        3.0, ge=2.0, le=600.0,
        description="Shortest activation (seconds) given a fatigue fit: median / mean frequency and their slope "
        "over its 1 s spectral windows (processors/measures/fatigue.py; at least 3 windows, so >= 2 s).",
    )
    worker_envelope_hop_s: float = Field(0.025, description="Envelope hop in seconds (envelope rate = 1/hop).")
    worker_silent_after_s: float = Field(
        5.0, description="A device with an open session sending nothing this long raises `device_silent`."
    )
    worker_session_timeout_s: float = Field(
        300.0, description="An open session without data this long is closed as `timed_out`."
    )
    worker_current_limit_ua: float = Field(
        600.0, description="Stimulation current limit when a session prescribes none (µA)."
    )
    worker_impedance_max_kohm: float = Field(
        50.0, description="Electrode impedance above this (kΩ) raises `impedance`."
    )
    worker_battery_low_pct: float = Field(15.0, description="Battery below this raises `battery_low`.")
    worker_battery_clear_pct: float = Field(20.0, description="Battery above this clears `battery_low` (hysteresis).")
    worker_mains_alert_uv: float = Field(
        20.0, description="Mains interference (RMS µV of the mains lines above the EMG floor beside them, "
        "per 1 s window) above which, for 5 s, `mains_noise` is raised."
    )
    worker_electrode_off_kohm: float = Field(
        1000.0, description="Electrode impedance above this (kΩ) means no skin contact: `electrode_off`."
    )

    # --- clinic API (clinical/) ----------------------------------------------------
    clinic_api_host: str = Field("127.0.0.1", description="Clinic API listen address (`mimetic clinic-api "
                                 "serve`; loopback by default: put TLS in front to expose it).")
    clinic_api_port: int = Field(8090, description="Clinic API port (patients, courses, assessments, PROs, "
                                 "consents, device assignments).")
    clinic_api_tokens_file: Path | None = Field(
        None, description="Clinic API: the token hashes with their user, clinic and database login (mode "
        "0600); unset means $MIMETIC_HOME/secrets/clinic-api-tokens.json.")

    # --- alert notifier (alerts/) ------------------------------------------------
    notify_group: str = Field("mimetic-notify", description="Kafka consumer group of the alert notifier.")
    notify_pg_user: str = Field(
        "mimetic_notify",
        description="Notifier: database login, a member of `mimetic_notifier` (made when missing); its password "
        "is in $MIMETIC_HOME/secrets/pg-role-<user>. The owner's name means the owner.",
    )
    notify_host: str = Field("127.0.0.1", description="Notifier HTTP API listen address (loopback by default).")
    notify_port: int = Field(8089, description="Notifier HTTP API port (acknowledge, resolve, list alerts).")
    notify_escalate_after_s: float = Field(
        900.0,
        description="A critical alert not acknowledged (or resolved) this long after it was notified goes to the "
        "next escalation tier of its audience's receivers.",
    )
    notify_retry_base_s: float = Field(
        2.0, description="Notifier: first retry delay of a failed delivery (doubles per attempt)."
    )
    notify_retry_max_s: float = Field(300.0, description="Notifier: longest delay between two delivery attempts.")
    notify_send_timeout_s: float = Field(
        10.0, description="Notifier: longest wait for one webhook answer or SMTP exchange."
    )
    notify_lease_s: float = Field(
        60.0,
        description="Notifier: a delivery being sent is held this long; if its sender dies, it is retried after "
        "(with the same idempotency key). Must exceed the send timeout.",
    )
    notify_tick_s: float = Field(
        1.0, description="Notifier: how often due deliveries and escalations are looked for (seconds)."
    )
    notify_batch_size: int = Field(500, description="Notifier: most alert records taken from Kafka per step.")
    notify_secrets_dir: Path | None = Field(
        None,
        description="Where webhook signing secrets are kept (files `notify-webhook-<receiver>`, mode 0600); "
        "unset means $MIMETIC_HOME/secrets.",
    )
    notify_smtp_host: str = Field("127.0.0.1", description="Notifier: SMTP server for e-mail receivers.")
    notify_smtp_port: int = Field(25, description="Notifier: SMTP port.")
    notify_smtp_starttls: bool = Field(False, description="Notifier: upgrade the SMTP connection with STARTTLS.")
    notify_smtp_user: str | None = Field(
        None,
        description="Notifier: SMTP login (unset: none); its password is read from "
        "$MIMETIC_HOME/secrets/notify-smtp-password.",
    )
    notify_admin_host: str = Field(
        "127.0.0.1", description="Notifier admin listener address (/livez, /readyz, /metrics); loopback."
    )
    notify_admin_port: int = Field(9183, description="Notifier admin listener port (`mimetic notify`; 0: off).")
    notify_smtp_from: str = Field("mimetic-alerts@localhost", description="Notifier: sender of alert e-mails.")

    @property
    def notify_secrets_path(self) -> Path:
        return self.notify_secrets_dir or self.secrets_dir

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

    def private_dir(self, *parts: str) -> Path:
        """``home/parts...``, made if missing (home included), every new directory mode 0700."""
        return private_dirs(self.home.joinpath(*parts))

    def bootstrap_servers(self) -> list[str]:
        """Every Kafka bootstrap address: those of MIMETIC_KAFKA_BOOTSTRAP; a single one is
        completed with the local stack's other nodes when MIMETIC_KAFKA_BROKERS > 1, so a client
        still connects while the first node is down."""
        listed = [a.strip() for a in self.kafka_bootstrap.split(",") if a.strip()]
        if len(listed) != 1 or self.kafka_brokers == 1:
            return listed
        host, port = listed[0].rsplit(":", 1)
        return [f"{host}:{int(port) + KAFKA_NODE_PORT_STEP * i}" for i in range(self.kafka_brokers)]

    def replication_factor(self) -> int:
        """Replicas of every topic the project creates (MIMETIC_TOPIC_REPLICATION, else up to 3)."""
        return self.topic_replication or min(3, self.kafka_brokers)

    def min_insync_replicas(self) -> int:
        """Replicas that must have a record before acks=all answers: 2 of 3 survives one broker
        loss without acknowledging a record only one broker holds; 1 below 3 replicas."""
        return 2 if self.replication_factor() >= 3 else 1

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

    def resolved_pg_admin_password(self) -> str | None:
        """The admin superuser's password, or None where this machine has none (production)."""
        if self.pg_admin_password is not None:
            return self.pg_admin_password
        path = self.secrets_dir / "pg-admin-password"
        return path.read_text().strip() if path.exists() else None

    def db_dsn(self, user: str | None = None, password: str | None = None) -> str:
        """libpq URL for `user` (default: the owner role)."""
        user = user or self.pg_user
        password = password if password is not None else self.resolved_pg_password()
        return (
            f"postgresql://{quote(user)}:{quote(password)}@{self.pg_host}:{self.pg_port}/"
            f"{quote(self.pg_database)}?{urlencode(self.pg_ssl_params(), quote_via=quote)}"
        )

    def pg_ssl_params(self) -> dict[str, str]:
        """libpq TLS parameters (for DSNs and keyword connections alike)."""
        params = {"sslmode": self.pg_sslmode}
        if self.pg_sslrootcert is not None:
            params["sslrootcert"] = str(self.pg_sslrootcert)
        return params


#: settings given on the command line (e.g. `mimetic --database NAME ...`); they win over the
#: environment, and reach child processes through `Settings.as_env()` like every other setting
_overrides: dict[str, object] = {}


def override_settings(**values: object) -> None:
    """Make `get_settings()` return these values (the `mimetic` command's global options);
    None removes an override."""
    for name, value in values.items():
        if value is None:
            _overrides.pop(name, None)
        else:
            _overrides[name] = value
    get_settings.cache_clear()


def overridden(name: str) -> bool:
    """Was setting `name` given on the command line (not just by the environment)?"""
    return name in _overrides


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings(**_overrides)


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

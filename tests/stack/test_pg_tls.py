"""PostgreSQL TLS: MIMETIC_PG_SSLMODE / MIMETIC_PG_SSLROOTCERT reach every connection (Settings.db_dsn,
the admin's keyword connections, service logins), tested against a private cluster restarted with
ssl = on and a trustme server certificate (MIMETIC_PG_SERVER_TLS_CERT/KEY): verify-full succeeds
over TLS, a wrong CA fails; the default (prefer) still connects to a cluster without TLS. Grafana's
data sources follow the same setting."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
import trustme

from dashboards.provisioning import datasource_payload, datasources
from mimetic.config import Settings
from mimetic.db import admin
from mimetic.stack import postgres
from processors.storage.roles import sink_dsn


def _ssl_in_use(dsn: str) -> bool:
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        return conn.execute("select ssl from pg_stat_ssl where pid = pg_backend_pid()").fetchone()[0]


def test_dsn_and_grafana_follow_the_settings() -> None:
    s = Settings(pg_password="pw")
    assert s.db_dsn().endswith("?sslmode=prefer")
    ds = datasources([])[0]
    assert datasource_payload(ds, s)["jsonData"]["sslmode"] == "disable"  # Grafana has no "prefer"
    tls = s.model_copy(update={"pg_sslmode": "verify-full", "pg_sslrootcert": Path("/etc/mimetic/pg ca.crt")})
    assert tls.db_dsn().endswith("?sslmode=verify-full&sslrootcert=%2Fetc%2Fmimetic%2Fpg%20ca.crt")
    assert psycopg.conninfo.conninfo_to_dict(tls.db_dsn())["sslrootcert"] == "/etc/mimetic/pg ca.crt"
    assert {k: v for k, v in datasource_payload(ds, tls)["jsonData"].items() if "ssl" in k.lower() or "tls" in k} == {
        "sslmode": "verify-full", "tlsConfigurationMethod": "file-path", "sslRootCertFile": "/etc/mimetic/pg ca.crt"}
    with pytest.raises(ValueError):
        Settings(pg_sslmode="on")


@pytest.mark.stack
def test_verify_full_against_a_tls_cluster(private_pg: Settings, tmp_path: Path) -> None:
    s = private_pg
    assert _ssl_in_use(s.db_dsn()) is False  # default: TLS off on the server, prefer connects in clear
    with pytest.raises(psycopg.OperationalError):
        _ssl_in_use(s.model_copy(update={"pg_sslmode": "require"}).db_dsn())

    ca, other = trustme.CA(), trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "server.crt"))
    cert.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    other.cert_pem.write_to_path(str(tmp_path / "other.pem"))
    tls = s.model_copy(update={"pg_server_tls_cert": tmp_path / "server.crt",
                               "pg_server_tls_key": tmp_path / "server.key",
                               "pg_sslmode": "verify-full", "pg_sslrootcert": tmp_path / "ca.pem"})
    postgres.stop(s)
    try:
        postgres.start(tls)  # its set-up connects as the admin, with verify-full
        assert _ssl_in_use(tls.db_dsn()) is True
        assert _ssl_in_use(sink_dsn(tls)) is True
        with admin.connect_admin(tls) as conn:
            assert conn.execute("select ssl from pg_stat_ssl where pid = pg_backend_pid()").fetchone()[0]
        wrong = tls.model_copy(update={"pg_sslrootcert": tmp_path / "other.pem"})
        with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
            _ssl_in_use(wrong.db_dsn())
    finally:
        postgres.stop(tls)
        postgres.start(s)  # ssl = off again, for the fixture's teardown

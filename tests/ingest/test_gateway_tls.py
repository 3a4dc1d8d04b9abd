"""The gateway with MIMETIC_GATEWAY_TLS_CERT/KEY (throwaway certificates from trustme): a client that
trusts the CA posts over HTTPS and streams over WSS (ingest/send.py's senders through `run_replay`,
with MIMETIC_GATEWAY_CA_FILE), plain HTTP and a client trusting another CA are refused. Without the
settings the device port is plain HTTP (every other gateway test)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import requests
import trustme

from ingest import wire
from ingest.gateway.server import tls_context
from ingest.runner import run_replay
from ingest.simulator import SimRecord
from mimetic.config import Settings
from tests.ingest.conftest import GatewayProc, read_topic
from tests.ingest.test_gateway import frame

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pki")
    ca, other = trustme.CA(), trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.cert_chain_pems[0].write_to_path(str(d / "gw.crt"))
    for pem in cert.cert_chain_pems[1:]:
        pem.write_to_path(str(d / "gw.crt"), append=True)
    cert.private_key_pem.write_to_path(str(d / "gw.key"))
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    other.cert_pem.write_to_path(str(d / "other-ca.pem"))
    return {"cert": d / "gw.crt", "key": d / "gw.key", "ca": d / "ca.pem", "other": d / "other-ca.pem"}


def test_tls_is_off_by_default_and_needs_both_files(pki) -> None:
    assert tls_context(Settings()) is None
    with pytest.raises(ValueError):
        tls_context(Settings(gateway_tls_cert=pki["cert"]))
    assert tls_context(Settings(gateway_tls_cert=pki["cert"], gateway_tls_key=pki["key"])) is not None


def test_https_and_wss_with_a_trusted_ca(settings: Settings, new_device, pki) -> None:
    gw = GatewayProc(settings, MIMETIC_GATEWAY_TLS_CERT=str(pki["cert"]), MIMETIC_GATEWAY_TLS_KEY=str(pki["key"]))
    https = gw.url.replace("http://", "https://")
    try:
        gw.wait_healthy()  # the admin listener stays plain HTTP on loopback
        dev, secret = new_device()
        headers = {"Authorization": f"Bearer {secret}", "Content-Type": wire.CT_FRAME}
        url = f"{https}/v1/devices/{dev}/frames"
        r = requests.post(url, data=wire.encode_frame(frame(dev, 1)), headers=headers, timeout=30,
                          verify=str(pki["ca"]))
        assert r.status_code == 202, r.text

        with pytest.raises(requests.exceptions.SSLError):
            requests.post(url, data=wire.encode_frame(frame(dev, 2)), headers=headers, timeout=30,
                          verify=str(pki["other"]))
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.post(f"{gw.url}/v1/devices/{dev}/frames", data=wire.encode_frame(frame(dev, 2)),
                          headers=headers, timeout=30)

        # the senders of `mimetic simulate`/`replay`: wss (default transport) and https
        client = settings.model_copy(update={"gateway_url": https, "gateway_ca_file": pki["ca"]})
        for transport, seqs in (("ws", range(2, 6)), ("http", range(6, 9))):
            recs = [SimRecord(wire.KIND_FRAME, 0.0, frame(dev, seq), 0) for seq in seqs]
            out = asyncio.run(run_replay(recs, client, dev, via="gateway", secret=secret, speed=0,
                                         transport=transport))
            assert out["sent"] == len(recs) and out["rejected"] == 0, out
        assert [wire.decode_frame(v).seq for _, v, _ in read_topic(settings, "frame", dev)] == list(range(1, 9))
    finally:
        gw.stop()

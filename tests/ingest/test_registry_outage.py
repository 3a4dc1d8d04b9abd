"""Registry database unreachable (cut for the gateway only, through a TCP proxy): devices verified
recently keep streaming (stale-if-error), others get 503 + Retry-After, and all recover."""

from __future__ import annotations

import time

import pytest
import requests

from ingest import wire
from tests.ingest.conftest import GatewayProc, TcpProxy, read_topic
from tests.ingest.test_gateway import frame

pytestmark = pytest.mark.stack


def test_registry_outage(settings, new_device):
    proxy = TcpProxy(settings.pg_port).start()
    gw = GatewayProc(settings, MIMETIC_PG_PORT=str(proxy.port), MIMETIC_GATEWAY_AUTH_CACHE_TTL_S="0.5",
                     MIMETIC_PG_PASSWORD=settings.resolved_pg_password())
    try:
        gw.wait_healthy()
        a, sa = new_device()
        b, sb = new_device()

        def send(dev, secret, seq):
            return requests.post(f"{gw.url}/v1/devices/{dev}/frames", data=wire.encode_frame(frame(dev, seq)),
                                 headers={"Authorization": f"Bearer {secret}", "Content-Type": wire.CT_FRAME},
                                 timeout=30)

        assert send(a, sa, 1).status_code == 202
        proxy.cut()
        time.sleep(0.6)  # past the cache TTL: the gateway must go back to the (unreachable) registry
        assert [send(a, sa, s).status_code for s in (2, 3)] == [202, 202]
        r = send(b, sb, 1)
        assert r.status_code == 503 and r.json()["error"] == "registry_unavailable" and "Retry-After" in r.headers
        assert requests.get(gw.admin_url + "/readyz").json()["db"] is False

        proxy = TcpProxy(settings.pg_port, port=proxy.port).start()
        deadline = time.monotonic() + 20
        while (code := send(b, sb, 1).status_code) != 202:
            assert code == 503 and time.monotonic() < deadline
            time.sleep(0.3)
        assert [wire.decode_frame(v).seq for _, v, _ in read_topic(settings, "frame", a)] == [1, 2, 3]
        assert [wire.decode_frame(v).seq for _, v, _ in read_topic(settings, "frame", b)] == [1]
    finally:
        gw.stop()
        proxy.cut()

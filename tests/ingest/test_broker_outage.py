"""Kafka down: the gateway answers 503 + Retry-After; after the broker returns, a retrying client loses nothing.

Runs its OWN single-node broker (temp home, other ports; jars shared with the main stack's
cache by a symlink) so the shared broker is never touched.
"""

from __future__ import annotations

import asyncio
import os
import threading

import aiohttp
import pytest
import requests

from ingest import wire
from ingest.send import DeliveryStats, HttpSender, WsSender
from mimetic.kafka_admin import ensure_topics
from mimetic.stack import kafka as kafka_stack
from mimetic.net import free_loopback_port
from processors.storage.roles import password_file
from tests.ingest.conftest import GatewayProc, read_topic
from tests.ingest.test_gateway import frame

pytestmark = [pytest.mark.stack, pytest.mark.slow]


@pytest.fixture
def own_broker(settings, stack_settings, tmp_path):
    home = tmp_path / "home"
    (home / "cache").mkdir(parents=True)
    jars = stack_settings.cache_dir / f"kafka-{stack_settings.kafka_version}"
    os.symlink(jars, home / "cache" / jars.name)
    # the shared database's gateway login: its password lives in the shared home's secrets
    (home / "secrets").mkdir(mode=0o700)
    gw_secret = password_file(settings, settings.gateway_pg_user)
    (home / "secrets" / gw_secret.name).write_text(gw_secret.read_text())
    (home / "secrets" / gw_secret.name).chmod(0o600)
    s2 = settings.model_copy(update={"home": home, "kafka_bootstrap": f"127.0.0.1:{free_loopback_port()}",
                                     "kafka_controller_port": free_loopback_port(), "kafka_heap_mb": 256,
                                     "topic_partitions": 2, "pg_password": settings.resolved_pg_password()})
    kafka_stack.start(s2)
    try:
        ensure_topics(s2)
        yield s2
    finally:
        kafka_stack.stop(s2)


def test_broker_outage_503_then_no_loss(own_broker, new_device):
    s2 = own_broker
    gw = GatewayProc(s2, MIMETIC_GATEWAY_KAFKA_TIMEOUT_S="2", MIMETIC_GATEWAY_RETRY_AFTER_S="1")
    try:
        gw.wait_healthy()
        dev, secret = new_device()
        h = {"Authorization": f"Bearer {secret}", "Content-Type": wire.CT_FRAME}
        url = f"{gw.url}/v1/devices/{dev}/frames"
        for seq in range(1, 6):
            assert requests.post(url, data=wire.encode_frame(frame(dev, seq)), headers=h).status_code == 202

        kafka_stack.stop(s2)  # our own broker only
        outage = []
        for seq in range(6, 9):
            r = requests.post(url, data=wire.encode_frame(frame(dev, seq)), headers=h, timeout=30)
            outage.append(r)
        assert [r.status_code for r in outage] == [503] * 3
        assert all(r.headers.get("Retry-After") == "1" and r.json()["error"] == "kafka_unavailable" for r in outage)
        assert requests.get(gw.admin_url + "/readyz").json()["kafka"] is False

        # retrying clients (HTTP, and a WebSocket stream of a second device) keep sending during the
        # outage and while the broker comes back
        stats, ws_stats = DeliveryStats(), DeliveryStats()
        seqs = list(range(6, 46))
        ws_dev, ws_secret = new_device()
        ws_seqs = list(range(1, 201))
        errors: list[BaseException] = []

        async def client() -> None:
            async with aiohttp.ClientSession() as http:
                snd = HttpSender(gw.url, dev, secret, http, stats, give_up_s=180, max_backoff_s=1.0)
                for seq in seqs:
                    await snd.send("frame", frame(dev, seq))

        async def ws_client() -> None:
            async with aiohttp.ClientSession() as http:
                snd = WsSender(gw.url, ws_dev, ws_secret, http, ws_stats, window=16, give_up_s=180)
                for seq in ws_seqs:
                    await snd.send("frame", frame(ws_dev, seq))
                    await asyncio.sleep(0.02)
                await snd.close()

        async def both() -> None:
            await asyncio.gather(client(), ws_client())

        def run() -> None:
            try:
                asyncio.run(both())
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        t = threading.Thread(target=run)
        t.start()
        kafka_stack.start(s2)
        t.join(timeout=240)
        assert not t.is_alive() and not errors, errors
        assert stats.sent == len(seqs) and stats.rejected == 0 and stats.retries > 0

        got = [wire.decode_frame_record(v, hd) for _, v, hd in read_topic(s2, "frame", dev)]
        received = [f.seq for f, _ in got]
        assert set(received) == set(range(1, 46))  # nothing lost, nothing invented
        # extra copies only for seqs that were attempted during the outage, and they are marked
        for seq in {q for q in received if received.count(q) > 1}:
            assert 6 <= seq < 46
            assert any(m.resent or m.dup for f, m in got if f.seq == seq)
        assert requests.get(gw.admin_url + "/readyz").json()["kafka"] is True
        assert ws_stats.sent == len(ws_seqs) and ws_stats.rejected == 0 and ws_stats.retries > 0
        ws_got = [wire.decode_frame_record(v, hd) for _, v, hd in read_topic(s2, "frame", ws_dev)]
        assert {f.seq for f, _ in ws_got} == set(ws_seqs)
        ws_received = [f.seq for f, _ in ws_got]
        for seq in {q for q in ws_received if ws_received.count(q) > 1}:
            assert any(m.resent or m.dup for f, m in ws_got if f.seq == seq)
    finally:
        gw.stop()

"""The shared admin listener (mimetic/admin_listener.py) in process: /livez, /readyz (cached, one
probe at a time, 503 with Retry-After when a check fails or raises), /metrics; its checks against
ports where nothing listens."""

from __future__ import annotations

import asyncio

from aiohttp import ClientSession
from prometheus_client import CollectorRegistry, Counter

from mimetic import admin_listener as al
from mimetic.admin_listener import KafkaProbe, Readiness, admin_app, db_reachable, start_admin
from mimetic.net import free_loopback_port


async def _serve(ready, registry=None, collect=None):
    port = free_loopback_port()
    runner = await start_admin(admin_app(ready, registry or CollectorRegistry(), retry_after_s=7, collect=collect),
                               "127.0.0.1", port, "test")
    return runner, f"http://127.0.0.1:{port}"


def test_routes_readiness_and_metrics() -> None:
    async def main() -> None:
        state = {"db": True, "calls": 0}

        async def ready() -> Readiness:
            state["calls"] += 1
            await asyncio.sleep(0.05)
            return Readiness({"db": state["db"]}, {"partitions": 3})

        reg = CollectorRegistry()
        c = Counter("mimetic_test_things_total", "things", registry=reg)
        collected = []
        runner, url = await _serve(ready, reg, collect=lambda: collected.append(1))
        try:
            async with ClientSession() as http:
                async with http.get(url + "/livez") as r:
                    assert r.status == 200 and (await r.json())["status"] == "ok"
                answers = await asyncio.gather(*(http.get(url + "/readyz") for _ in range(20)))
                assert [a.status for a in answers] == [200] * 20
                assert await answers[0].json() == {"status": "ok", "db": True, "partitions": 3}
                assert state["calls"] == 1  # twenty probes at once: one check
                state["db"] = False
                await asyncio.sleep(al.READY_CACHE_S)
                async with http.get(url + "/readyz") as r:
                    assert r.status == 503 and r.headers["Retry-After"] == "7"
                    assert (await r.json())["db"] is False
                async with http.get(url + "/healthz") as r:
                    assert r.status == 503
                c.inc(3)
                async with http.get(url + "/metrics") as r:
                    assert r.status == 200 and "mimetic_test_things_total 3.0" in await r.text()
                assert collected == [1]
        finally:
            await runner.cleanup()

    asyncio.run(main())


def test_a_raising_check_is_not_ready_and_a_taken_port_is_no_crash() -> None:
    async def main() -> None:
        async def broken() -> Readiness:
            raise RuntimeError("boom")

        runner, url = await _serve(broken)
        try:
            async with ClientSession() as http:
                async with http.get(url + "/readyz") as r:
                    assert r.status == 503 and (await r.json())["status"] == "degraded"
            taken = int(url.rsplit(":", 1)[1])
            assert await start_admin(admin_app(broken), "127.0.0.1", taken, "second") is None
        finally:
            await runner.cleanup()

    asyncio.run(main())


def test_checks_fail_fast_where_nothing_listens() -> None:
    async def main() -> None:
        dead = free_loopback_port()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        assert await db_reachable(f"postgresql://x:y@127.0.0.1:{dead}/z", timeout_s=1.0) is False
        probe = KafkaProbe(f"127.0.0.1:{dead}")
        assert await probe.reachable(timeout_s=1.0) is False
        await probe.close()
        assert loop.time() - t0 < 4.0

    asyncio.run(main())

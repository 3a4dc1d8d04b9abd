"""Serving the gateway until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from ingest.gateway.app import Gateway
from mimetic.config import Settings

log = logging.getLogger("mimetic.gateway")


def run_gateway(settings: Settings) -> None:
    """Serve until SIGTERM/SIGINT (graceful: open requests finish, the producer flushes)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    gw = Gateway(settings)

    async def main() -> None:
        runner = web.AppRunner(gw.app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, settings.gateway_host, settings.gateway_port, backlog=1024)
        await site.start()
        log.info("gateway listening on http://%s:%d", settings.gateway_host, settings.gateway_port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("gateway stopping")
        await runner.cleanup()

    asyncio.run(main())

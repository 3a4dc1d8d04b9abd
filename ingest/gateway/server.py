"""Serving the gateway: the device listener (with connection limits and a request
handler that never echoes or logs header values) and the admin listener."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
import ssl
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from ingest.gateway.admin import admin_app
from ingest.gateway.app import Gateway
from ingest.gateway.errors import SERVER_NAME
from mimetic.admin_listener import start_admin
from mimetic.config import Settings

log = logging.getLogger("mimetic.gateway")

_OVER_CAPACITY_BODY = b'{"error": "overloaded", "detail": "too many connections"}'


def over_capacity_answer(retry_after_s: int) -> bytes:
    """The whole HTTP answer to a connection over the cap (written before anything is read)."""
    return (b"HTTP/1.1 503 Service Unavailable\r\nServer: " + SERVER_NAME.encode()
            + b"\r\nContent-Type: application/json\r\nRetry-After: %d\r\nConnection: close\r\n" % retry_after_s
            + b"Content-Length: %d\r\n\r\n" % len(_OVER_CAPACITY_BODY) + _OVER_CAPACITY_BODY)


_SECRETISH = re.compile(r"(?i)(authorization\s*[:=]\s*|bearer\s+|cookie\s*[:=]\s*)[^\r\n'\"]+")


def redact(text: str) -> str:
    """Text with what follows 'Authorization', 'Bearer' or 'Cookie' replaced."""
    return _SECRETISH.sub(r"\1<redacted>", text)


class RedactingFilter(logging.Filter):
    """Defence in depth: no log line (message or traceback) carries a bearer token."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), ()
        if record.exc_info:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class SafeRequestHandler(RequestHandler):
    """aiohttp's protocol handler, except that a request it cannot parse (bad header bytes,
    over-long lines...) is answered with a fixed JSON body and logged without the parser's
    message: that message quotes the offending header line, secrets included."""

    def __init__(self, *args: Any, on_lost: Any = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.on_lost = on_lost

    def connection_lost(self, exc: BaseException | None) -> None:
        super().connection_lost(exc)
        if self.on_lost is not None:
            self.on_lost()
            self.on_lost = None

    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        log.info("refused a malformed request from %s: %d %s", request.remote, status, type(exc).__name__)
        if request.writer.output_size > 0:
            raise ConnectionError("response already started")
        reason = "bad_request" if status < 500 else "internal_error"
        body = json.dumps({"error": reason, "detail": "malformed HTTP request" if status < 500 else ""})
        resp = web.Response(status=status, text=body, content_type="application/json",
                            headers={"Server": SERVER_NAME})
        resp.force_close()
        return resp


class _Refuse:
    """Protocol of a connection over the cap: one 503 and close."""

    def __init__(self, answer: bytes):
        self.answer = answer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self.answer)  # type: ignore[attr-defined]
        transport.close()

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        pass

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass


class GuardedSite(web.BaseSite):
    """A TCP site whose connections use :class:`SafeRequestHandler`, at most ``max_connections`` at once."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, *, max_connections: int,
                 handler_kwargs: dict[str, Any], retry_after_s: int = 2, backlog: int = 1024,
                 ssl_context: ssl.SSLContext | None = None, handshake_timeout_s: float = 10.0):
        super().__init__(runner, backlog=backlog)
        self.ssl_context, self.handshake_timeout_s = ssl_context, handshake_timeout_s
        self.refusal = over_capacity_answer(retry_after_s)
        self.host, self.port, self.max_connections, self.handler_kwargs = host, port, max_connections, handler_kwargs
        self.open_connections = 0  # counted at accept: aiohttp's own list lags behind a burst of accepts

    @property
    def name(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://{self.host}:{self.port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None

        def lost() -> None:
            self.open_connections -= 1

        def factory() -> Any:
            if self.open_connections >= self.max_connections:
                return _Refuse(self.refusal)
            self.open_connections += 1
            return SafeRequestHandler(server, loop=loop, on_lost=lost, **self.handler_kwargs)

        tls: dict[str, Any] = {} if self.ssl_context is None else {
            "ssl": self.ssl_context, "ssl_handshake_timeout": self.handshake_timeout_s}
        self._server = await loop.create_server(factory, self.host, self.port, backlog=self._backlog,
                                                reuse_address=True, **tls)


def tls_context(s: Settings) -> ssl.SSLContext | None:
    """The device port's TLS context (TLS 1.2 or later), or None when no certificate is set."""
    if s.gateway_tls_cert is None and s.gateway_tls_key is None:
        return None
    if s.gateway_tls_cert is None or s.gateway_tls_key is None:
        raise ValueError("set both MIMETIC_GATEWAY_TLS_CERT and MIMETIC_GATEWAY_TLS_KEY, or neither")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(s.gateway_tls_cert), str(s.gateway_tls_key))
    return ctx


def handler_kwargs(s: Settings) -> dict[str, Any]:
    """aiohttp protocol options of the device port: the keep-alive timeout also bounds the time
    to complete request headers (aiohttp closes a connection still waiting for a request)."""
    return {"keepalive_timeout": s.gateway_header_timeout_s, "max_line_size": s.gateway_max_header_bytes,
            "max_field_size": s.gateway_max_header_bytes, "max_headers": 64, "lingering_time": 2.0}


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    gw = Gateway(settings)
    kwargs = handler_kwargs(settings)
    runner = web.AppRunner(gw.app(), access_log=None, handle_signals=False, **kwargs)
    await runner.setup()
    site = GuardedSite(runner, settings.gateway_host, settings.gateway_port,
                       max_connections=settings.gateway_max_connections, handler_kwargs=kwargs,
                       retry_after_s=settings.gateway_retry_after_s, ssl_context=tls_context(settings),
                       handshake_timeout_s=settings.gateway_header_timeout_s)
    await site.start()
    admin = await start_admin(admin_app(gw), settings.gateway_admin_host, settings.gateway_admin_port, "gateway")
    log.info("gateway listening on %s", site.name)
    await stop.wait()
    log.info("gateway stopping")
    await runner.cleanup()
    if admin is not None:
        await admin.cleanup()


def run_gateway(settings: Settings) -> None:
    """Serve until SIGTERM/SIGINT (graceful: open requests finish, the producer flushes)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for h in logging.getLogger().handlers:
        h.addFilter(RedactingFilter())

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(settings, stop)

    asyncio.run(main())

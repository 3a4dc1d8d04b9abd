"""Alert delivery fixtures: own topic and consumer group, a webhook receiver and an SMTP server on
loopback, the notifier as a subprocess (so a test can SIGKILL it)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email import message_from_bytes
from email.message import Message
from pathlib import Path

import psycopg
import pytest
from aiohttp import web
from kafka import KafkaProducer

from alerts.payload import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, verify
from mimetic import topics
from mimetic.config import REPO_ROOT, Settings
from mimetic.kafka_admin import ensure_topics
from mimetic.net import free_loopback_port
from processors import records as r

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=timezone.utc)


@pytest.fixture
def notify_settings(settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    """Own alerts topic (2 partitions), consumer group, API port and secrets directory; fast retries.
    Receivers and tokens are removed afterwards (the operators' receivers would hear every test)."""
    tag = uuid.uuid4().hex[:6]
    s = settings.model_copy(update={
        "topic_prefix": f"{settings.topic_prefix}-n{tag}", "topic_partitions": 2, "notify_group": f"notify-{tag}",
        "notify_port": free_loopback_port(), "notify_secrets_dir": tmp_path / "secrets",
        "notify_retry_base_s": 0.5, "notify_retry_max_s": 2.0, "notify_send_timeout_s": 2.0,
        "notify_lease_s": 5.0, "notify_tick_s": 0.2,
    })
    ensure_topics(s, (topics.ALERTS,))
    yield s
    with psycopg.connect(s.db_dsn(), autocommit=True) as conn:
        conn.execute("delete from app.alert_receiver")
        conn.execute("delete from app.alert_api_token")


def alert(device: str, alert_type: str, i: int, state: str = "raised", severity: str = "warning",
          session_id: uuid.UUID | None = None) -> r.AlertRecord:
    """Alert episode number ``i`` of a device (raised at T0 + i s, cleared 5 s later)."""
    raised = T0 + timedelta(seconds=i)
    return r.AlertRecord(alert_id=r.alert_id(device, alert_type, raised), device_id=device, session_id=session_id,
                         alert_type=alert_type, severity=severity, state=state,
                         time=raised if state == "raised" else raised + timedelta(seconds=5), raised_at=raised,
                         value=float("nan") if i % 7 == 0 else 1.5 * i, threshold=600.0,
                         message=f"{alert_type} {state} #{i}")


def produce(s: Settings, recs: list[r.Record]) -> None:
    """Send records to the alerts topic with the project's encoding (acks=all)."""
    p = KafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all", linger_ms=5)
    try:
        for rec in recs:
            key, value, headers = r.to_message(rec)
            p.send(topics.ALERTS.name(s), key=key, value=value, headers=headers)
        p.flush(timeout=30)
    finally:
        p.close()


def wait_until(cond: Callable[[], bool], timeout_s: float, what: str, step_s: float = 0.2) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(step_s)
    raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")


# --- the notifier as a process ------------------------------------------------------------------


class NotifierProcess:
    """`mimetic notify` in a subprocess with the test's settings; log in a file."""

    def __init__(self, s: Settings, log_dir: Path):
        self.s = s
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen] = []
        self.admin_port = free_loopback_port()  # /livez /readyz /metrics of every process started here

    def start(self) -> subprocess.Popen:
        log = open(self.log_dir / f"notifier-{len(self.procs)}.log", "wb")
        env = {**os.environ, **self.s.as_env(), "MIMETIC_NOTIFY_ADMIN_PORT": str(self.admin_port)}
        p = subprocess.Popen([sys.executable, "-m", "mimetic.cli", "notify"], cwd=REPO_ROOT, env=env,
                             stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(p)
        return p

    def kill(self) -> None:
        """SIGKILL the running notifier (no clean-up of any kind)."""
        p = self.procs[-1]
        p.send_signal(signal.SIGKILL)
        p.wait(10)

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()

    def logs(self) -> str:
        return "\n".join(f.read_text(errors="replace")[-3000:] for f in sorted(self.log_dir.glob("notifier-*.log")))


@pytest.fixture
def notifier(notify_settings: Settings, tmp_path: Path) -> Iterator[NotifierProcess]:
    n = NotifierProcess(notify_settings, tmp_path)
    try:
        yield n
    finally:
        n.stop_all()


# --- a webhook receiver ---------------------------------------------------------------------------


@dataclass
class Hit:
    path: str
    key: str
    body: bytes
    signed: bool
    new: bool           # first time this path saw this idempotency key
    at: float


@dataclass
class WebhookReceiver:
    """An aiohttp server in a thread: verifies each request's HMAC with its path's secret, answers 200
    (401 on a bad signature), counts a key as new only once per path. Can be stopped and started on
    the same port, and slowed down."""

    port: int = field(default_factory=free_loopback_port)
    secrets: dict[str, str] = field(default_factory=dict)     # path -> secret
    delay_s: float = 0.0
    hits: list[Hit] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._runner: web.AppRunner | None = None
        self._lock = threading.Lock()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.Response:
        data = await request.read()
        key = request.headers.get(IDEMPOTENCY_HEADER, "")
        signed = verify(self.secrets.get(request.path, ""), data, request.headers.get(SIGNATURE_HEADER))
        with self._lock:
            new = signed and not any(h.key == key and h.path == request.path and h.new for h in self.hits)
            self.hits.append(Hit(request.path, key, data, signed, new, time.monotonic()))
        t0 = time.monotonic()
        while time.monotonic() - t0 < self.delay_s:   # setting delay_s to 0 releases held requests
            await asyncio.sleep(0.02)
        return web.Response(status=200 if signed else 401)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def start(self) -> None:
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)

    def close(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def snapshot(self) -> list[Hit]:
        with self._lock:
            return list(self.hits)

    def keys(self, path: str) -> set[str]:
        return {h.key for h in self.snapshot() if h.path == path and h.signed}


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    w = WebhookReceiver()
    try:
        yield w
    finally:
        w.close()


# --- an SMTP server ------------------------------------------------------------------------------


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Message]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[int, _Inbox]]:
    from aiosmtpd.controller import Controller

    inbox = _Inbox()
    c = Controller(inbox, hostname="127.0.0.1", port=free_loopback_port())
    c.start()
    try:
        yield c.port, inbox
    finally:
        c.stop()

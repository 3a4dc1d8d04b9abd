"""Ingest fixtures: a real gateway subprocess, registered devices, and a reader of the raw topics."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import requests

from ingest import registry, wire
from mimetic.config import REPO_ROOT, Settings
from mimetic.net import free_loopback_port

MIMETIC = str(Path(sys.executable).parent / "mimetic")


class GatewayProc:
    def __init__(self, settings: Settings, **env: str):
        self.port = free_loopback_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_port = free_loopback_port()
        self.admin_url = f"http://127.0.0.1:{self.admin_port}"
        self.log = Path(f"/tmp/mimetic-test-gateway-{self.port}.log")
        full_env = {**os.environ, **settings.as_env(), "MIMETIC_GATEWAY_HOST": "127.0.0.1",
                    "MIMETIC_GATEWAY_PORT": str(self.port), "MIMETIC_GATEWAY_ADMIN_PORT": str(self.admin_port), **env}
        self.proc = subprocess.Popen([MIMETIC, "gateway"], env=full_env, cwd=REPO_ROOT, stdout=self.log.open("wb"),
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def wait_healthy(self, timeout: float = 60, kafka: bool = True) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                r = requests.get(self.admin_url + "/readyz", timeout=2)
                if r.status_code == 200 or (not kafka and r.json().get("db")):
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"gateway not healthy: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture(scope="session")
def gateway(settings: Settings) -> Iterator[GatewayProc]:
    # the whole session authenticates from 127.0.0.1: a failed-auth budget that the
    # credential tests cannot exhaust (the limiter has its own gateway in test_gateway_limits)
    gw = GatewayProc(settings, MIMETIC_GATEWAY_RATE_PER_S="5000", MIMETIC_GATEWAY_RATE_BURST="5000",
                     MIMETIC_GATEWAY_AUTH_CACHE_TTL_S="1", MIMETIC_GATEWAY_AUTH_FAIL_BURST="100000")
    try:
        gw.wait_healthy()
        yield gw
    finally:
        gw.stop()


_counter = iter(range(1, 10**6))


@pytest.fixture
def new_device(settings: Settings):
    """Factory: register a device (fast KDF for tests), returns (device_id, secret)."""

    def make(channel_map=None, fs_hz=None, prefix="tdev") -> tuple[str, str]:
        dev = f"{prefix}-{os.getpid()}-{next(_counter)}"
        with psycopg.connect(settings.db_dsn(), autocommit=True) as conn:
            secret = registry.add_device(conn, clinic_id="test-clinic", device_id=dev, channel_map=channel_map,
                                         fs_hz=fs_hz, kdf_n=2**12)
        return dev, secret

    return make


def read_topic(settings: Settings, kind: str, device_id: str | None = None) -> list[tuple[bytes, bytes, list]]:
    """Every record of a raw topic up to its current end, optionally only one device's: (key, value, headers)."""
    from kafka import KafkaConsumer, TopicPartition

    topic = wire.topic_spec_for(kind).name(settings)
    c = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False, group_id=None,
                      consumer_timeout_ms=2000)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or [])]
        c.assign(parts)
        end = c.end_offsets(parts)
        c.seek_to_beginning(*parts)
        out = []
        remaining = {tp for tp in parts if end[tp] > 0}
        deadline = time.monotonic() + 30
        while remaining and time.monotonic() < deadline:
            for tp, recs in c.poll(timeout_ms=500, max_records=5000).items():
                for r in recs:
                    if r.offset < end[tp] and (device_id is None or r.key == device_id.encode()):
                        out.append((r.key, r.value, list(r.headers)))
                if c.position(tp) >= end[tp]:
                    remaining.discard(tp)
        assert not remaining, "could not read the topic to its end"
        return out
    finally:
        c.close()


class TcpProxy:
    """A loopback TCP forwarder we can cut, to take a service away from one process only."""

    def __init__(self, target_port: int, port: int | None = None):
        import threading

        self.target = target_port
        self.port = port or free_loopback_port()
        self.conns: list[socket.socket] = []
        self.listener: socket.socket | None = None
        self.lock = threading.Lock()

    def start(self) -> "TcpProxy":
        import threading

        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", self.port))
        ls.listen(64)
        self.listener = ls
        threading.Thread(target=self._accept, args=(ls,), daemon=True).start()
        return self

    def _accept(self, ls: socket.socket) -> None:
        import threading

        while True:
            try:
                c, _ = ls.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                c.close()
                continue
            with self.lock:
                self.conns += [c, u]
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        """Close the listener and every forwarded connection."""
        if self.listener is not None:
            try:
                self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() thread (Linux)
            except OSError:
                pass
            self.listener.close()
            self.listener = None
        with self.lock:
            for s in self.conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self.conns.clear()

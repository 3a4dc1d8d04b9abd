"""The notifier's admin listener as a real subprocess: /livez 200, /readyz 200 when healthy and 503
while its database is cut (through a TCP proxy only it uses), /metrics with its series."""

from __future__ import annotations

import time

import pytest
import requests

from mimetic.config import Settings
from tests.alerts.conftest import NotifierProcess
from tests.ingest.conftest import TcpProxy

pytestmark = pytest.mark.stack


def _status(port: int, path: str) -> int | None:
    try:
        return requests.get(f"http://127.0.0.1:{port}{path}", timeout=5).status_code
    except requests.RequestException:
        return None


def _until(check, timeout_s: float, what: str, n: NotifierProcess) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{n.logs()}"
        time.sleep(0.3)


def test_notifier_ready_until_its_database_is_cut(notify_settings: Settings, tmp_path) -> None:
    proxy = TcpProxy(notify_settings.pg_port).start()
    n = NotifierProcess(notify_settings.model_copy(update={"pg_port": proxy.port}), tmp_path)
    try:
        n.start()
        port = n.admin_port
        _until(lambda: _status(port, "/readyz") == 200, 60, "the notifier to be ready", n)
        assert _status(port, "/livez") == 200
        body = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5).json()
        assert body["kafka"] is True and body["db"] is True and body["started"] is True

        proxy.cut()
        _until(lambda: _status(port, "/readyz") == 503, 15, "the notifier to see the database cut", n)
        r = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert r.json()["db"] is False and r.json()["kafka"] is True and "Retry-After" in r.headers
        assert _status(port, "/livez") == 200
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert "mimetic_notify_alert_records_total 0.0" in text and "process_cpu_seconds_total" in text

        proxy = TcpProxy(notify_settings.pg_port, port=proxy.port).start()
        _until(lambda: _status(port, "/readyz") == 200, 20, "the notifier to be ready again", n)
        assert n.procs[-1].poll() is None
    finally:
        n.stop_all()
        proxy.cut()

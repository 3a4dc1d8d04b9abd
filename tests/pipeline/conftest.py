"""Fixtures for end-to-end pipeline tests: worker and sink as real subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from mimetic.config import Settings
from mimetic.kafka_admin import delete_topics, ensure_topics


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Service:
    """One `mimetic <command>` subprocess with its log file; stopped by its own pid."""

    def __init__(self, command: list[str], env: dict[str, str], log_path: Path):
        self.command, self.env, self.log_path = command, env, log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Service":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "mimetic.cli", *self.command], env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        return self

    def kill(self) -> None:
        """SIGKILL: the crash the pipeline must survive."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


@pytest.fixture
def pipeline_settings(settings: Settings) -> Iterator[Settings]:
    """The session's settings with topics and consumer groups of this test only (deleted after it)."""
    run = uuid.uuid4().hex[:8]
    s = settings.model_copy(update={"topic_prefix": f"e2e-{run}", "worker_id": f"worker-{run}",
                                    "sink_group": f"sink-{run}"})
    ensure_topics(s)
    yield s
    delete_topics(s, f"e2e-{run}.", f"worker-{run}-")


@pytest.fixture
def services(pipeline_settings: Settings, tmp_path: Path) -> Iterator[Callable[..., Service]]:
    """Factory: services("worker", "--loglevel", "info") / services("sink") start real subprocesses; all
    stopped at the end."""
    started: list[Service] = []

    def start(command: str, *args: str, **extra_env: str) -> Service:
        env = {**os.environ, **pipeline_settings.as_env(), "MIMETIC_WORKER_WEB_PORT": str(free_port()),
               **extra_env}
        svc = Service([command, *args], env, tmp_path / f"{command}-{len(started)}.log").start()
        started.append(svc)
        return svc

    yield start
    for svc in started:
        svc.stop()


def wait_for(check: Callable[[], bool], timeout_s: float, what: str, logs: list[Service] = ()) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1.0)
    tails = "\n\n".join(f"--- {s.command} log ---\n{s.log_tail()}" for s in logs)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}\n{tails}")


def query(s: Settings, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(s.db_dsn(), autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()

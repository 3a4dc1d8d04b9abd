"""The sink under faults: SIGKILL mid-stream, and the database stopped mid-stream.

Both end with exactly the rows of an undisturbed run (no loss, no duplicate), and
while the database is down no offset is committed and fetching is paused.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from mimetic.config import REPO_ROOT, Settings
from mimetic.stack import postgres
from processors.sink import Sink

from .helpers import count_rows, expected_rows, mixed_records, produce
from .test_sink import committed_total, wait_for

pytestmark = [pytest.mark.stack, pytest.mark.slow]


def _rows_now(s: Settings, device: str) -> int:
    with psycopg.connect(s.db_dsn(), autocommit=True, connect_timeout=3) as conn:
        return conn.execute("select count(*) from envelope where device_id = %s", (device,)).fetchone()[0]


def _start_sink_process(s: Settings, log: Path) -> subprocess.Popen:
    env = {**os.environ, **s.as_env(), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "processors.sink"], cwd=REPO_ROOT, env=env,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)


def test_sigkill_mid_stream_then_restart_gives_exact_rows(sink_settings: Settings, db: psycopg.Connection,
                                                          tmp_path: Path) -> None:
    s = sink_settings.model_copy(update={"sink_batch_size": 300, "sink_linger_ms": 50})
    device = f"dev-kill-{uuid.uuid4().hex[:6]}"
    n_frames = 4000
    recs = mixed_records(device, n_frames, uuid.uuid4())
    chunks = [recs[i:i + 400] for i in range(0, len(recs), 400)]

    def producer():
        for c in chunks:
            produce(s, c)
            time.sleep(0.15)

    t = threading.Thread(target=producer)
    t.start()
    log = tmp_path / "sink.log"
    kills = 0
    proc = _start_sink_process(s, log)
    try:
        for fraction in (0.2, 0.55):
            deadline = time.monotonic() + 60
            while _rows_now(s, device) < n_frames * fraction and time.monotonic() < deadline:
                time.sleep(0.05)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            kills += 1
            assert 0 < _rows_now(s, device) < n_frames, "the kill should land mid-stream"
            proc = _start_sink_process(s, log)
        t.join(60)
        deadline = time.monotonic() + 90
        while committed_total(s) < len(recs) and time.monotonic() < deadline:
            time.sleep(0.3)
        assert committed_total(s) == len(recs), log.read_text()[-3000:]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    assert kills == 2
    assert count_rows(db, device) == expected_rows(n_frames)


def test_database_outage_back_pressure_no_loss_no_dup(sink_settings: Settings, private_pg: Settings) -> None:
    s = sink_settings.model_copy(update={"sink_batch_size": 500, "sink_linger_ms": 50,
                                         "sink_retry_max_s": 1.0})
    pg = private_pg
    device = f"dev-out-{uuid.uuid4().hex[:6]}"
    n_frames = 3000
    recs = mixed_records(device, n_frames, uuid.uuid4())
    half = len(recs) // 2

    async def scenario():
        sink = Sink(s, dsn=pg.db_dsn())
        task = asyncio.create_task(sink.run())
        try:
            await asyncio.to_thread(produce, s, recs[:half])
            await wait_for(lambda: committed_total(s) >= half, 60)
            await asyncio.to_thread(postgres.stop, pg)
            await asyncio.to_thread(produce, s, recs[half:])
            await wait_for(lambda: sink.metrics.value("mimetic_sink_db_retries_total") >= 2, 30)
            assert sink.consumer.paused(), "fetching must stop while the database is down"
            committed_while_down = committed_total(s)
            await asyncio.sleep(10)
            assert committed_total(s) == committed_while_down, "no offset may be committed while down"
            assert committed_while_down < len(recs)
            assert sink.metrics.value("mimetic_sink_db_up") == 0
            await asyncio.to_thread(postgres.start, pg)
            await wait_for(lambda: committed_total(s) >= len(recs), 90)
            assert not sink.consumer.paused()
            return sink.metrics
        finally:
            sink.stop()
            await asyncio.wait_for(task, 30)

    metrics = asyncio.run(scenario())
    assert metrics.value("mimetic_sink_db_up") == 1
    with psycopg.connect(pg.db_dsn(), autocommit=True) as conn:
        assert count_rows(conn, device) == expected_rows(n_frames)


def test_session_refresh_with_the_database_unreachable_is_transient() -> None:
    """The refresh job's connect fails like its query would: a retry later, never the sink's exit."""
    from processors.storage.writer import DbWriter, TransientDbError

    w = DbWriter("host=127.0.0.1 port=1 dbname=none user=none")
    with pytest.raises(TransientDbError):
        w.refresh_sessions(settle_s=0)

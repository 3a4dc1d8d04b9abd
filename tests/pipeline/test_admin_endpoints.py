"""Admin listeners of the worker and the sink as real subprocesses: /livez 200, /readyz 200 when
healthy and 503 when the database is cut (sink: through a TCP proxy only it uses), /metrics with
the named series (the worker's lag per partition, frames, dead letters, checkpoint age)."""

from __future__ import annotations

import pytest
import requests
from kafka import KafkaProducer

from mimetic import topics as T
from mimetic.config import Settings
from tests.ingest.conftest import TcpProxy
from tests.pipeline.conftest import wait_for

pytestmark = pytest.mark.stack


def _get(port: str, path: str) -> requests.Response | None:
    try:
        return requests.get(f"http://127.0.0.1:{port}{path}", timeout=5)
    except requests.RequestException:
        return None


def _status(port: str, path: str) -> int | None:
    r = _get(port, path)
    return None if r is None else r.status_code


def test_worker_admin_listener(pipeline_settings: Settings, services) -> None:
    s = pipeline_settings
    worker = services("worker")
    port = worker.env["MIMETIC_WORKER_ADMIN_PORT"]
    wait_for(lambda: _status(port, "/readyz") == 200, 90, "the worker to be ready", [worker])
    assert _status(port, "/livez") == 200
    ready = _get(port, "/readyz").json()
    assert ready["kafka"] and ready["assigned"] and ready["progressing"] and ready["partitions"] > 0

    # an undecodable frame: dead-lettered, and its partition's lag becomes known
    producer = KafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all")
    producer.send(T.RAW_FRAMES.name(s), key=b"admin-dev", value=b"not a frame").get(30)
    producer.close()

    def metrics() -> str:
        r = _get(port, "/metrics")
        return "" if r is None else r.text

    wait_for(lambda: "mimetic_worker_dead_letters_total{" in metrics(), 60, "the dead letter", [worker])
    text = metrics()
    partition = T.partition_of(b"admin-dev", s.topic_partitions)
    lag = f'mimetic_worker_lag_records{{partition="{partition}",topic="{T.RAW_FRAMES.name(s)}"}} 0.0'
    for series in ("mimetic_worker_frames_total 0.0", lag, "mimetic_worker_checkpoint_age_seconds ",
                   "mimetic_worker_partitions ", "mimetic_worker_records_total"):
        assert series in text, f"{series} missing from\n{text}"


def test_sink_admin_listener_ready_until_the_database_is_cut(pipeline_settings: Settings, services) -> None:
    proxy = TcpProxy(pipeline_settings.pg_port).start()
    try:
        sink = services("sink", MIMETIC_PG_PORT=str(proxy.port))
        port = sink.env["MIMETIC_SINK_ADMIN_PORT"]
        wait_for(lambda: _status(port, "/readyz") == 200, 60, "the sink to be ready", [sink])
        assert _status(port, "/livez") == 200
        assert _get(port, "/readyz").json() | {"partitions": 0, "paused": False} == {
            "status": "ok", "started": True, "kafka": True, "db": True, "partitions": 0, "paused": False}

        proxy.cut()
        wait_for(lambda: _status(port, "/readyz") == 503, 15, "the sink to see the database cut", [sink])
        r = _get(port, "/readyz")
        assert r.json()["db"] is False and r.json()["kafka"] is True and "Retry-After" in r.headers
        assert _status(port, "/livez") == 200, "a database outage is no reason to restart the sink"
        text = _get(port, "/metrics").text
        for series in ("mimetic_sink_db_retries_total", "mimetic_sink_batches_total", "mimetic_sink_db_up"):
            assert series in text

        proxy = TcpProxy(pipeline_settings.pg_port, port=proxy.port).start()
        wait_for(lambda: _status(port, "/readyz") == 200, 15, "the sink to be ready again", [sink])
        assert sink.alive()
    finally:
        proxy.cut()

"""Decoding request bodies and WebSocket messages into records, and a process pool for
the heavy ones.

Why a process and not a thread: decoding a 1 MiB JSON frame is ~50-100 ms of pure
Python holding the GIL; in a thread the event loop still waits for the GIL at every
switch, and an honest device's latency went from ~15 ms to ~60 ms while one device
posted such frames. A worker process takes that CPU off the gateway's interpreter.
The workers are spawned (fresh interpreters): the program that starts the gateway must
guard its entry point with ``if __name__ == "__main__"`` (the `mimetic` script does).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import concurrent.futures.process
import multiprocessing
from typing import Any

from ingest import wire
from ingest.gateway.errors import Reject


def decode_http(kind: str, body: bytes, json_body: bool, device_id: str) -> Any:
    """The record of one HTTP body; raises :class:`wire.WireError`."""
    if kind == wire.KIND_FRAME:
        if json_body:
            return wire.decode_frame_json(body, expected_device=device_id)
        return wire.decode_frame(body, expected_device=device_id)
    if kind == wire.KIND_TELEMETRY:
        return wire.decode_telemetry(body, expected_device=device_id)
    return wire.decode_event(body, expected_device=device_id)


def decode_ws(data: bytes | str, binary: bool, device_id: str) -> tuple[str, Any]:
    """(kind, record) of one WebSocket message; raises :class:`wire.WireError`."""
    if binary:
        return wire.KIND_FRAME, wire.decode_frame(data, expected_device=device_id)
    obj = wire.parse_json(data)
    if not isinstance(obj, dict):
        raise wire.WireError("bad_json", "a text message is a JSON object", 400)
    kind = obj.get("kind")
    if kind is None:
        kind = wire.KIND_FRAME if "samples" in obj else (wire.KIND_EVENT if "type" in obj else wire.KIND_TELEMETRY)
    if kind == wire.KIND_FRAME:
        return kind, wire.frame_from_json(obj, device_id)
    if kind == wire.KIND_TELEMETRY:
        return kind, wire.telemetry_from_json(obj, device_id)
    if kind == wire.KIND_EVENT:
        obj = {k: v for k, v in obj.items() if k != "kind"}
        return kind, wire.event_from_json(obj, device_id)
    raise wire.WireError("unknown_kind", f"kind must be one of {wire.KINDS}", 422)


def _in_worker(fn_name: str, args: tuple) -> tuple[str, Any]:
    """Runs in the worker: a WireError comes back as plain values (it does not pickle faithfully)."""
    try:
        return "ok", {"http": decode_http, "ws": decode_ws}[fn_name](*args)
    except wire.WireError as exc:
        return "error", (exc.reason, exc.detail, exc.status)


class Decoder:
    """At most ``workers`` heavy decodes at once, each in a worker process."""

    def __init__(self, workers: int):
        self.workers = max(1, workers)
        self.pool: concurrent.futures.ProcessPoolExecutor | None = None
        self.slots: asyncio.Semaphore | None = None

    def _new_pool(self) -> concurrent.futures.ProcessPoolExecutor:
        return concurrent.futures.ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))

    async def start(self) -> None:
        self.slots = asyncio.Semaphore(self.workers)
        self.pool = self._new_pool()
        await asyncio.get_running_loop().run_in_executor(self.pool, _in_worker, "ws", (b"{}", False, "warm-up"))

    async def run(self, fn_name: str, *args: Any) -> Any:
        """The decoded record; a dead worker (killed, out of memory) is replaced and this
        request answered 503, so a retry is safe."""
        assert self.pool is not None and self.slots is not None
        async with self.slots:
            try:
                status, value = await asyncio.get_running_loop().run_in_executor(
                    self.pool, _in_worker, fn_name, args)
            except concurrent.futures.process.BrokenProcessPool:
                self.pool.shutdown(wait=False, cancel_futures=True)
                self.pool = self._new_pool()
                raise Reject(503, "overloaded", "decoder restarting, retry later") from None
        if status == "error":
            raise wire.WireError(*value)
        return value

    def stop(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)

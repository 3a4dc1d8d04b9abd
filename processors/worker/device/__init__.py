"""The per-device processing of the worker: a coordinator (`processor.DeviceProcessor`) over
typed parts (`session`, `balance`, `activation`, `quality`, `telemetry`), saved as `state`."""

from processors.worker.device.balance import balance
from processors.worker.device.common import INT4_MAX, INT8_MAX, WorkerParams, utc
from processors.worker.device.processor import DeviceProcessor, FrameBatchResult, state_revision
from processors.worker.device.state import STATE_VERSION

__all__ = ["DeviceProcessor", "FrameBatchResult", "INT4_MAX", "INT8_MAX", "STATE_VERSION", "WorkerParams",
           "balance", "state_revision", "utc"]

"""Refusals: an answer other than 202, with a reason from a fixed vocabulary."""

from __future__ import annotations

from typing import Any

from ingest import wire

#: the Server header of every answer: no library or version
SERVER_NAME = "mimetic-gateway"


class Reject(Exception):
    """An answer other than 202: status, reason, detail, extra headers."""

    def __init__(self, status: int, reason: str, detail: str = "", headers: dict[str, str] | None = None):
        super().__init__(reason)
        self.status, self.reason, self.detail, self.headers = status, reason, detail, headers or {}

    @classmethod
    def from_wire(cls, exc: wire.WireError) -> "Reject":
        return cls(exc.status, exc.reason, exc.detail)

    def body(self) -> dict[str, Any]:
        return {"error": self.reason, "detail": self.detail}


"""The ingest gateway: authenticated HTTP + WebSocket in, Kafka (acks=all) out.

Routes::

    POST /v1/devices/{device_id}/frames      body: binary frame (application/x-mimetic-frame or
                                             application/octet-stream) or JSON frame (application/json)
    POST /v1/devices/{device_id}/telemetry   body: JSON telemetry
    POST /v1/devices/{device_id}/events      body: JSON session event
    GET  /v1/devices/{device_id}/stream      WebSocket: binary messages are frames; text messages are
                                             JSON with "kind": "frame" | "telemetry" | "event"
                                             (inferred when absent). One JSON ack per message, in order:
                                             {"i": n, "kind": .., "seq": .., "status": 202, "dup": false}
                                             or {"i": n, "status": 4xx/503, "error": reason, "detail": ..}.
    GET  /v1/openapi.json                    this API as OpenAPI 3.1 (:mod:`.openapi`), no auth

    admin listener (:mod:`.admin`, loopback): /livez, /readyz, /healthz (= readyz), /metrics

Answers: 202 only after Kafka has acknowledged the record (idempotent producer,
acks=all, key = device id). 400/408/413/415/422 with ``{"error": reason, "detail": ...}``
(reasons from :mod:`ingest.wire`), 401 missing credentials or ``unauthorized`` (an
unknown device and a wrong secret get the same answer), 403 revoked device (only
after a correct secret), 429 over a limit (:mod:`.limits`), 503 with ``Retry-After``
when Kafka (or the registry database) is unreachable or the gateway has too many
records in flight. Every 4xx produces nothing.

Authentication: ``Authorization: Bearer <device secret>`` on every request and on
the WebSocket handshake (see :mod:`ingest.registry`).

Why a cache in front of scrypt (:class:`DeviceAuth`): a slow KDF on every request
would cap a 2-core gateway at a few dozen requests per second. The registry row of
a device (status, secret hash, channel map) is cached for ``gateway_auth_cache_ttl_s``
(5 s); next to it, the SHA-256 digests of secrets that passed scrypt against that
exact hash are remembered, so a repeat request costs one SHA-256 and a constant-time
compare. An unknown secret forces a re-read of the row (at most once a second per
device), so a freshly rotated secret works at once. When the TTL expires the row is re-read (one indexed query per device per
TTL): a revocation or a rotated secret takes effect within the TTL, on open
WebSockets too (they are closed with 4403). Digests of wrong secrets are remembered
as well (bounded), so guessing does not become a CPU amplifier; failed authentications
are limited per source address and per device id before any KDF runs. The cache holds
digests, never the secrets. If the registry database is unreachable, rows read in
the last 5 minutes keep being used (stale-if-error: ingest survives a short database
outage, at the price of revocations waiting for the database); devices not in the
cache get 503.

Duplicates: per device and record kind, the gateway remembers the last 8192 sequence
numbers Kafka acknowledged and those attempted but not (yet) acknowledged; a
record whose seq was acknowledged is still written, with header ``dup: 1``; one
attempted before without an acknowledgement (a retry after a 503) gets ``resent: 1``.
So retries are always safe and never silently merged.

Modules: :mod:`.auth` (DeviceAuth), :mod:`.limits` (buckets, failed-auth limiter,
stream cap, body limits), :mod:`.decode` (decoders, worker process), :mod:`.seqs`
(duplicate marks), :mod:`.kafka_out` (producer), :mod:`.metrics`, :mod:`.app`
(HTTP routes), :mod:`.stream` (WebSocket), :mod:`.admin` (health, metrics),
:mod:`.openapi` (the published API), :mod:`.server` (listeners, safe parser errors).
"""

from ingest.gateway.app import Gateway
from ingest.gateway.auth import STALE_IF_ERROR_S, DeviceAuth
from ingest.gateway.errors import Reject
from ingest.gateway.kafka_out import KafkaOut
from ingest.gateway.limits import TokenBucket
from ingest.gateway.metrics import Metrics
from ingest.gateway.seqs import SeqMemory
from ingest.gateway.server import run_gateway

__all__ = ["STALE_IF_ERROR_S", "DeviceAuth", "Gateway", "KafkaOut", "Metrics", "Reject", "SeqMemory", "TokenBucket",
           "run_gateway"]

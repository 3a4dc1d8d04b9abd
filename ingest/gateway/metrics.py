"""Prometheus metrics of the gateway (served on the admin listener)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("mimetic_gateway_requests_total", "HTTP requests and WebSocket messages by route and status",
                                ["route", "status"], registry=r)
        self.rejected = Counter("mimetic_gateway_rejected_total", "Refused records by reason", ["reason"], registry=r)
        self.accepted = Counter("mimetic_gateway_records_total", "Records acknowledged by Kafka", ["kind"], registry=r)
        self.marked = Counter("mimetic_gateway_duplicates_total", "Records passed through with a dup/resent mark",
                              ["kind", "mark"], registry=r)
        self.latency = Histogram("mimetic_gateway_request_seconds", "Request (or WebSocket message) handling time",
                                 ["route"], registry=r,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.kafka_up = Gauge("mimetic_gateway_kafka_up", "1 when the producer is connected", registry=r)
        self.inflight = Gauge("mimetic_gateway_inflight_records", "Records awaiting Kafka acknowledgement", registry=r)
        self.ws = Gauge("mimetic_gateway_websockets", "Open WebSocket streams", registry=r)
        self.auth_kdf = Counter("mimetic_gateway_auth_kdf_total", "scrypt verifications performed", registry=r)


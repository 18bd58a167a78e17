"""Prometheus metrics warnd exports at /metrics; one registry per process (tests make their own)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.deliveries = Counter(
            "warnd_deliveries_total",
            "Delivery state changes by channel and new state",
            ["channel", "state"],
            registry=self.registry,
        )
        self.send_failures = Counter(
            "warnd_send_failures_total",
            "Failed sends by channel, outcome and reason",
            ["channel", "outcome", "reason"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "warnd_queue_depth",
            "Queued deliveries per channel kind",
            ["channel_kind"],
            registry=self.registry,
        )
        self.ingest = Counter(
            "warnd_ingest_total",
            "Messages received by source, result and reason",
            ["source", "result", "reason"],
            registry=self.registry,
        )
        self.planning = Histogram(
            "warnd_planning_seconds",
            "Time to plan one warning",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=self.registry,
        )
        self.feed_silent = Gauge(
            "warnd_feed_silent",
            "1 while a feed has sent nothing for longer than its expected heartbeat",
            ["feed"],
            registry=self.registry,
        )
        self.inbound = Counter(
            "warnd_inbound_events_total",
            "Inbound events by channel, kind and whether they matched a delivery",
            ["channel", "kind", "matched"],
            registry=self.registry,
        )

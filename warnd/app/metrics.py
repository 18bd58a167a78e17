"""Prometheus metrics warnd exports at /metrics; one registry per process (tests make their own)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from channels.base import LINK_LEVELS, Channel


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
        self.eew_feed_up = Gauge(
            "warnd_eew_feed_up",
            "1 while the early-warning subscription ([eew]) is connected and subscribed",
            ["broker"],
            registry=self.registry,
        )
        self.speakers = Gauge(
            "warnd_speakers",
            "Loudspeakers per county by state (online, offline), as their channels report them",
            ["county", "state"],
            registry=self.registry,
        )
        self.speakers_alarm = Gauge(
            "warnd_speakers_offline_alarm",
            "1 while too many of a county's loudspeakers are offline ([speakers] in the config)",
            ["county"],
            registry=self.registry,
        )
        self.answer_latency = Histogram(
            "warnd_answer_latency_seconds",
            "From a key press, reply or device confirmation reaching warnd to its acknowledgement "
            "committed in PostgreSQL, by kind",
            ["kind"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.inbound = Counter(
            "warnd_inbound_events_total",
            "Inbound events by channel, kind and whether they matched a delivery",
            ["channel", "kind", "matched"],
            registry=self.registry,
        )


# Per channel: held by this process, and by whom; None where no channel is competed for.
Owner = Callable[[str], "tuple[bool, str | None] | None"]


class ChannelHealth(Collector):
    """Per-link metrics of channels that hold connections (SMPP, SIP): read from
    ``Channel.health()`` at each scrape, so the numbers are the channel's own and nothing is
    counted twice. With several processes, only the holder of a channel reports its links, and
    every process says which channels it holds (``warnd_channel_held``)."""

    def __init__(self, channels: Mapping[str, Channel], *, owner: Owner | None = None) -> None:
        self._channels = channels
        self._owner = owner

    def collect(self) -> Iterator[Metric]:
        held = GaugeMetricFamily(
            "warnd_channel_held",
            "1 while this process holds the channel (bound, sending); 0 while another does or "
            "none (only in processes with the dispatch role)",
            labels=["channel"],
        )
        owners = {name: self._owner(name) for name in self._channels} if self._owner else {}
        for name, owner in sorted(owners.items()):
            if owner is not None:
                held.add_metric([name], 1.0 if owner[0] else 0.0)
        yield held
        labels = ["channel", "link"]
        up = GaugeMetricFamily("warnd_channel_link_up", "1 while the link is bound", labels=labels)
        in_flight = GaugeMetricFamily(
            "warnd_channel_link_in_flight", "Messages sent and not yet answered", labels=labels
        )
        levels = GaugeMetricFamily(
            "warnd_channel_link_level",
            "Link levels by name (window, workers, workers_up, calls waiting for a line…)",
            labels=[*labels, "level"],
        )
        events = CounterMetricFamily(
            "warnd_channel_link_events",
            "Link events by kind (submitted, throttled, receipt_delivered, reply, bad_input_…)",
            labels=[*labels, "event"],
        )
        for name, channel in sorted(self._channels.items()):
            owner = owners.get(name)
            if self._owner is not None and (owner is None or not owner[0]):
                continue  # not started here: its links are the holder's to report
            links = (channel.health() or {}).get("links")
            if not isinstance(links, dict):
                continue
            for link, facts in sorted(links.items()):
                up.add_metric([name, link], 1.0 if facts.get("bound") else 0.0)
                in_flight.add_metric([name, link], float(facts.get("in_flight") or 0))
                for key, value in facts.items():
                    if key in ("bound", "in_flight") or "rate" in key:
                        continue
                    if key in LINK_LEVELS:
                        if isinstance(value, int | float) and not isinstance(value, bool):
                            levels.add_metric([name, link, key], float(value))
                        continue
                    table = value if isinstance(value, dict) else {"": value}
                    for label, number in table.items():
                        if isinstance(number, int | float) and not isinstance(number, bool):
                            event = f"{key}_{label}" if label else key
                            events.add_metric([name, link, event], float(number))
        yield up
        yield in_flight
        yield levels
        yield events

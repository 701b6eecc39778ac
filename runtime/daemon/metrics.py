"""Prometheus metrics of one daemon, in a registry of its own so tests can run several."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


class Metrics:
    def __init__(
        self,
        incident_counts: Callable[[], dict[str, int]],
        pending_events: Callable[[], int],
        outbox_counts: Callable[[], dict[str, int]] | None = None,
    ) -> None:
        self.registry = CollectorRegistry()
        self.payloads = Counter(
            "irules_payloads",
            "Webhook payloads received, by source and outcome (accepted, rejected, failed).",
            ["source", "outcome"],
            registry=self.registry,
        )
        self.alerts = Counter("irules_alerts_received", "Alerts received, by source.", ["source"], registry=self.registry)
        self.events = Counter(
            "irules_alert_events_applied",
            "Alert events applied by the pipeline, by outcome (new, repeat, refire, resolved, failed, ...).",
            ["outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "irules_pipeline_latency_seconds",
            "Time from receiving an alert to applying it to an incident.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.reloads = Counter(
            "irules_rules_reloads", "Rules reloads, by outcome (ok, failed).", ["outcome"], registry=self.registry
        )
        self.notifications = Counter(
            "irules_notifications",
            "Notification attempts that ended, by channel and outcome (delivered, retry, failed).",
            ["channel", "outcome"],
            registry=self.registry,
        )
        self.registry.register(_StoreCollector(incident_counts, pending_events, outbox_counts or dict))


class _StoreCollector(Collector):
    """Reads incident counts and the pipeline backlog from the store at scrape time."""

    def __init__(
        self,
        incident_counts: Callable[[], dict[str, int]],
        pending_events: Callable[[], int],
        outbox_counts: Callable[[], dict[str, int]],
    ) -> None:
        self._incident_counts = incident_counts
        self._pending_events = pending_events
        self._outbox_counts = outbox_counts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        incidents = GaugeMetricFamily("irules_incidents", "Incidents in the store, by status.", labels=["status"])
        for status, count in sorted(self._incident_counts().items()):
            incidents.add_metric([status], count)
        yield incidents
        yield GaugeMetricFamily(
            "irules_alert_events_pending", "Stored alert events the pipeline has not applied yet.", value=self._pending_events()
        )
        messages = GaugeMetricFamily(
            "irules_outbox_messages",
            "Notifications in the outbox, by status (pending, sending, delivered, failed, cancelled, folded).",
            labels=["status"],
        )
        for status, count in sorted(self._outbox_counts().items()):
            messages.add_metric([status], count)
        yield messages

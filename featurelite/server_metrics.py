"""The HTTP server's Prometheus metrics: request counts and latencies per endpoint, rows
pushed per view, and per-view row counts and last event time read from the store at
scrape time."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .store import Store

__all__ = ["Metrics"]

#: Latency buckets (seconds) fine enough for sub-millisecond reads.
_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics(Collector):
    """Request counts and latencies, plus per-view row counts and last event time read
    from the store at scrape time."""

    def __init__(self, store: Store) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "featurelite_requests", "HTTP requests answered", ["endpoint", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "featurelite_request_seconds", "Time to answer a request", ["endpoint"], buckets=_BUCKETS,
            registry=self.registry,
        )
        self.pushed = Counter(
            "featurelite_pushed_rows", "Rows ingested through /push", ["view"], registry=self.registry
        )
        self.store = store
        self.registry.register(self)  # a custom collector: collect() below

    def collect(self) -> Iterable[GaugeMetricFamily]:
        history = GaugeMetricFamily("featurelite_view_history_rows", "History rows per feature view", labels=["view"])
        online = GaugeMetricFamily(
            "featurelite_view_online_rows", "Entities with online values per view", labels=["view"]
        )
        last = GaugeMetricFamily(
            "featurelite_view_last_event_timestamp_seconds",
            "Latest event time per view (Unix seconds)",
            labels=["view"],
        )
        if not self.store.closed:
            for view in self.store.list_feature_views():
                info = self.store.describe(view.name)
                history.add_metric([view.name], info["history_rows"])
                online.add_metric([view.name], info["online_rows"])
                if info["last_event"] is not None:
                    last.add_metric([view.name], info["last_event"].timestamp())
        return [history, online, last]

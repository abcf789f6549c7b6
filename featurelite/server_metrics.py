"""The HTTP server's Prometheus metrics: request counts and latencies per endpoint, rows
pushed per view, and, read from the store at scrape time, per view: row counts, last event
time, freshness (the newest value's age, the SLO and whether it is broken), the ages of
the values served and push-to-visible latencies (histograms), and the serving logs' rows."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
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

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily]:
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
        return [history, online, last, *self._freshness()]

    def _freshness(self) -> list[GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily]:
        age = GaugeMetricFamily(
            "featurelite_view_newest_value_age_seconds", "Age of the newest value per view (now - its event time)",
            labels=["view"],
        )
        slo = GaugeMetricFamily("featurelite_view_freshness_slo_seconds", "The view's freshness SLO", labels=["view"])
        breached = GaugeMetricFamily(
            "featurelite_view_freshness_breached", "1 when the view's newest value is older than its SLO",
            labels=["view"],
        )
        served = HistogramMetricFamily(
            "featurelite_served_value_age_seconds", "Ages of the values sampled online reads served", labels=["view"]
        )
        stale = CounterMetricFamily(
            "featurelite_served_stale_values", "Sampled served values older than the view's SLO", labels=["view"]
        )
        push = HistogramMetricFamily(
            "featurelite_push_to_visible_seconds", "From an ingest or push starting to its values being readable",
            labels=["view"],
        )
        logged = CounterMetricFamily("featurelite_serving_log_rows", "Rows written to each serving log", labels=["log"])
        dropped = CounterMetricFamily(
            "featurelite_serving_log_dropped_rows", "Serving log rows lost (a full queue or a failed write)"
        )
        families: list[GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily] = [
            age, slo, breached, served, stale, push, logged, dropped,
        ]
        if self.store.closed:
            return families
        report = self.store.freshness()
        for view in report.views:
            if view.newest_age is not None:
                age.add_metric([view.view], view.newest_age.total_seconds())
            if view.slo is not None:
                slo.add_metric([view.view], view.slo.total_seconds())
                breached.add_metric([view.view], 1.0 if view.breached else 0.0)
        stats = self.store.serving_stats
        ages, stale_counts, pushes = stats.export()
        for name, exported in ages.items():
            served.add_metric([name], exported.buckets, exported.total)
        for name, count in stale_counts.items():
            stale.add_metric([name], count)
        for name, exported in pushes.items():
            push.add_metric([name], exported.buckets, exported.total)
        for name, rows in sorted(stats.logged.items()):
            logged.add_metric([name], rows)
        dropped.add_metric([], stats.dropped)
        return families

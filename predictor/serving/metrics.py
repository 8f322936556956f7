"""Prometheus metrics of the stream worker, on a registry of its own.

Every worker records into its own ``CollectorRegistry`` (tests run several in one process);
``serve`` exposes it on ``metrics_port`` when that is not 0. The end-to-end latency histogram
is filled a batch at a time with numpy, since one ``observe`` per prediction would cost a few
per cent of the worker at tens of thousands of predictions a second.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from predictor.serving.pipeline import BatchResult
from stream_features.quality import FINDING_RULES

log = logging.getLogger("etastream.stream")

__all__ = ["LATENCY_BUCKETS_S", "BulkHistogram", "StreamMetrics"]

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 300.0)


class BulkHistogram(Collector):
    """A histogram that takes a whole array per observation call.

    >>> h = BulkHistogram("x_seconds", "demo", (0.1, 1.0))
    >>> h.observe_many([0.05, 0.5, 0.7, 9.0])
    >>> h.counts.tolist(), round(h.total, 2)
    ([1, 2, 1], 10.25)
    """

    def __init__(self, name: str, doc: str, buckets: Sequence[float]) -> None:
        self.name, self.doc = name, doc
        self.edges = np.asarray(buckets, dtype=np.float64)
        self.counts = np.zeros(len(buckets) + 1, dtype=np.int64)
        self.total = 0.0
        self._lock = threading.Lock()

    def observe_many(self, values: Sequence[float] | np.ndarray) -> None:
        arr = np.asarray(values, dtype=np.float64)
        if arr.size == 0:
            return
        # a value equal to an upper bound belongs in that bucket (le), hence side="left"
        idx = np.searchsorted(self.edges, arr, side="left")
        with self._lock:
            self.counts += np.bincount(idx, minlength=self.counts.size)
            self.total += float(arr.sum())

    def collect(self) -> Iterator[HistogramMetricFamily]:
        with self._lock:
            cumulative = np.cumsum(self.counts).tolist()
            total = self.total
        bounds = [*(str(float(e)) for e in self.edges), "+Inf"]
        family = HistogramMetricFamily(self.name, self.doc)
        family.add_metric([], list(zip(bounds, cumulative, strict=True)), total)
        yield family


class StreamMetrics:
    """What the stream worker reports: throughput, batches, latency, lag, DLQ, model in use."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events = Counter("eta_stream_events", "Records consumed", ["topic"], registry=r)
        self.predictions = Counter("eta_stream_predictions", "Predictions produced", registry=r)
        self.dead_letters = Counter(
            "eta_stream_dead_letters", "Records sent to the DLQ", ["topic"], registry=r
        )
        self.findings = Counter(
            "eta_stream_contract_findings",
            "Data-quality findings of the events kept, by rule (docs/contract.md)",
            ["rule"],
            registry=r,
        )
        for rule in FINDING_RULES:  # every rule from 0, so a rate() sees its first finding
            self.findings.labels(rule.name)
        self.feature_updates = Counter(
            "eta_stream_feature_events",
            "Events the feature store saw, by outcome (applied, duplicates, late)",
            ["outcome"],
            registry=r,
        )
        self.batch_size = Histogram(
            "eta_stream_batch_size",
            "Records per micro-batch",
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000),
            registry=r,
        )
        self.batch_seconds = Histogram(
            "eta_stream_batch_seconds",
            "Time in the core per batch (decode, features, predict, encode)",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=r,
        )
        self.latency = BulkHistogram(
            "eta_stream_end_to_end_latency_seconds",
            "Order created_at to prediction acknowledged by the broker (wall clock; "
            "meaningful for live traffic, not for replayed history)",
            LATENCY_BUCKETS_S,
        )
        r.register(self.latency)
        self.lag = Gauge(
            "eta_stream_consumer_lag",
            "High watermark minus position per assigned partition (as the broker reports it)",
            ["topic", "partition"],
            registry=r,
        )
        self.paused = Gauge(
            "eta_stream_paused_partitions",
            "Partitions paused because they run ahead of the others in event time",
            registry=r,
        )
        self.stalled = Gauge(
            "eta_stream_broker_stalled",
            "1 while a connection to the broker owes answers and has received nothing for 5 s",
            registry=r,
        )
        self.retries = Counter(
            "eta_stream_retries", "Batches read again, by cause", ["cause"], registry=r
        )
        self.store_errors = Counter(
            "eta_stream_feature_store_errors",
            "Feature round trips Redis failed, by cause (maxmemory: Redis is at its memory "
            "limit; connection, timeout, error)",
            ["cause"],
            registry=r,
        )
        self.commits = Counter("eta_stream_commits", "Offset commits sent", registry=r)
        self.model = Gauge(
            "eta_stream_model_info", "The model version in use (1)", ["name", "version"], registry=r
        )
        self.shadow_predictions = Counter(
            "eta_stream_shadow_predictions",
            "Shadow records sent: the challenger's prediction next to the served one",
            registry=r,
        )
        self.shadow_failures = Counter(
            "eta_stream_shadow_failures",
            "Batches or records the shadow left out, by reason (missing: no model at the "
            "stage; error: it failed to score; busy: still scoring earlier batches; dropped: "
            "its producer queue was full; delivery: the broker refused a record)",
            ["reason"],
            registry=r,
        )
        self._model: tuple[str, str] | None = None
        self._unexplained: str | None = None  # the model (name:version) last said to explain none

    def observe_batch(self, result: BatchResult, seconds: float) -> None:
        for topic, n in result.events_by_topic.items():
            self.events.labels(topic).inc(n)
        for topic, n in result.dead_letters_by_topic.items():
            self.dead_letters.labels(topic).inc(n)
        for rule, n in result.findings_by_rule.items():
            self.findings.labels(rule).inc(n)
        for outcome in ("applied", "duplicates", "late"):
            if result.feature_stats.get(outcome):
                self.feature_updates.labels(outcome).inc(result.feature_stats[outcome])
        self.predictions.inc(len(result.predictions))
        self.batch_size.observe(sum(result.events_by_topic.values()))
        self.batch_seconds.observe(seconds)
        if result.model_name:
            self.set_model(result.model_name, result.model_version)
        model = f"{result.model_name}:{result.model_version}"
        if result.unexplained and model != self._unexplained:
            self._unexplained = model  # said once per model version
            log.warning(
                "ETA_STREAM_EXPLAIN is on, and the model cannot explain: predictions go out "
                "without reasons",
                extra={"model": model, "reason": result.unexplained},
            )

    def observe_acked(self, created_ms: Sequence[int], acked_wall_ms: int) -> None:
        if created_ms:
            ms = np.asarray(created_ms, dtype=np.int64)
            self.latency.observe_many((acked_wall_ms - ms) / 1000.0)

    def set_model(self, name: str, version: str) -> None:
        if self._model == (name, version):
            return
        if self._model is not None:
            self.model.remove(*self._model)
        self.model.labels(name, version).set(1)
        self._model = (name, version)

    def serve(self, port: int, addr: str = "127.0.0.1") -> None:
        """Expose the metrics over HTTP on ``port`` (0 means off)."""
        if port:
            start_http_server(port, addr=addr, registry=self.registry)


class LoadFailures(Collector):
    """``eta_model_load_failures_total``: versions a service's stage pointed at that it could
    not load (a corrupt artifact, another feature registry), read from its model handle at
    each scrape; the service keeps serving the version it had (``ModelHandle``).

    >>> r = CollectorRegistry()
    >>> r.register(LoadFailures(lambda: 2))
    >>> r.get_sample_value("eta_model_load_failures_total")
    2.0
    """

    def __init__(self, count: Callable[[], int]) -> None:
        self._count = count

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "eta_model_load_failures",
            "Model versions the stage pointed at that could not be loaded (the one before is kept)",
        )
        family.add_metric([], float(self._count()))
        yield family

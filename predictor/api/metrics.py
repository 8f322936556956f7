"""Prometheus metrics of the HTTP API, on a registry of its own (tests build many apps).

Requests are counted by route template (``/v1/predictions/{order_id}``, never the raw path,
whose cardinality a client controls), method and status; latency is a histogram by route and
method; the model in use is read at scrape time, so it follows hot reloads without a hook.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from predictor.serving.pipeline import ScoringModel
from stream_features.quality import FINDING_RULES

__all__ = ["ApiMetrics"]

_LATENCY_BUCKETS_S = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    10.0,
)


class _ModelInfo(Collector):
    def __init__(self, current: Callable[[], ScoringModel | None]) -> None:
        self._current = current

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "eta_http_model_info", "The model the API scores with (1)", labels=["name", "version"]
        )

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield self._family()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = self._family()
        model = self._current()
        if model is not None:
            family.add_metric([model.name, model.version], 1.0)
        yield family


class ApiMetrics:
    """Request counts and latency by route and status, predictions made, the model in use."""

    def __init__(self, current_model: Callable[[], ScoringModel | None]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "eta_http_requests", "HTTP requests", ["route", "method", "status"], registry=r
        )
        self.latency = Histogram(
            "eta_http_request_duration_seconds",
            "Time from the request's arrival in the app to its last byte sent",
            ["route", "method"],
            buckets=_LATENCY_BUCKETS_S,
            registry=r,
        )
        self.shed = Counter(
            "eta_http_shed",
            "Requests answered 503 at once because ETA_API_MAX_INFLIGHT were in progress",
            registry=r,
        )
        self.predictions = Counter(
            "eta_http_predictions", "Orders scored by POST /v1/predictions", registry=r
        )
        self.findings = Counter(
            "eta_http_contract_findings",
            "Data-quality findings of the orders scored, by rule (docs/contract.md)",
            ["rule"],
            registry=r,
        )
        for rule in FINDING_RULES:
            if rule.event_type == "OrderCreated":  # the only event the API reads
                self.findings.labels(rule.name)
        self.batch_orders = Histogram(
            "eta_http_scoring_batch_orders",
            "Orders per feature read and predict (concurrent requests are scored together)",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000, 2000),
            registry=r,
        )
        self.shadow_predictions = Counter(
            "eta_http_shadow_predictions",
            "Shadow records sent (ETA_SHADOW_STAGE): the challenger's prediction next to the "
            "one served",
            registry=r,
        )
        self.shadow_failures = Counter(
            "eta_http_shadow_failures",
            "Batches or records the shadow left out, by reason (missing: no model at the "
            "stage; error: it failed to score; busy: its queue of batches was full, dropped; "
            "dropped: its producer queue was full; delivery: the broker refused a record)",
            ["reason"],
            registry=r,
        )
        r.register(_ModelInfo(current_model))

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)

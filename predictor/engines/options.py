"""Plain values an engine runs with, built once from ``Settings`` in the command's entry point."""

from __future__ import annotations

from dataclasses import dataclass

from predictor.engines.errors import EngineConfigError
from predictor.serving.pipeline import PipelineConfig
from stream_features.definitions import feature_names
from stream_features.settings import Settings

__all__ = [
    "DEAD_LETTER_MAX_BYTES",
    "EngineOptions",
    "WorkerStats",
    "engine_options",
    "pipeline_config",
]

DEAD_LETTER_MAX_BYTES = 8_000_000
"""Under the producer's and the topics' 10 MiB limit with room for the envelope."""


@dataclass
class WorkerStats:
    """Running totals of one worker, logged at exit and read by tests."""

    batches: int = 0
    records: int = 0
    predictions: int = 0
    dead_letters: int = 0
    commits: int = 0
    rewinds: int = 0
    uncommitted_batches: int = 0


@dataclass(frozen=True)
class EngineOptions:
    """Where records come from and go to, and how batches are cut, retried and committed."""

    orders_topic: str
    dasher_events_topic: str
    deliveries_topic: str
    predictions_topic: str
    dlq_topic: str
    batch_max_events: int = 1000
    batch_max_wait_ms: int = 5
    exactly_once: bool = False
    max_inflight_batches: int = 8
    commit_interval_ms: int = 1000
    lag_interval_s: float = 5.0
    backoff_base_s: float = 0.05
    backoff_cap_s: float = 5.0
    shutdown_timeout_s: float = 30.0
    align_margin_s: int = 60
    align_idle_ms: int = 1000
    stall_after_s: float = 5.0  # a broker connection silent this long while owing answers

    @property
    def source_topics(self) -> list[str]:
        return [self.orders_topic, self.dasher_events_topic, self.deliveries_topic]


def engine_options(settings: Settings) -> EngineOptions:
    return EngineOptions(
        orders_topic=settings.orders_topic,
        dasher_events_topic=settings.dasher_events_topic,
        deliveries_topic=settings.deliveries_topic,
        predictions_topic=settings.predictions_topic,
        dlq_topic=settings.dlq_topic,
        batch_max_events=settings.batch_max_events,
        batch_max_wait_ms=settings.batch_max_wait_ms,
        exactly_once=settings.exactly_once,
        align_margin_s=settings.align_margin_s,
        align_idle_ms=settings.align_idle_ms,
    )


def pipeline_config(settings: Settings) -> PipelineConfig:
    """The core's config: size and time limits, and which messages each source topic carries."""
    unknown = sorted(set(settings.stream_feature_names) - set(feature_names()))
    if unknown:
        raise EngineConfigError(
            f"ETA_STREAM_FEATURE_NAMES names no model input: {', '.join(unknown)} "
            "(docs/features.md lists them)"
        )
    return PipelineConfig(
        max_message_bytes=settings.max_message_bytes,
        max_future_skew_s=settings.max_future_skew_s,
        contract_strict=settings.contract_strict,
        include_features=settings.stream_include_features,
        feature_names=settings.stream_feature_names,
        with_range=settings.stream_range,
        explain=settings.stream_explain,
        max_dead_letter_bytes=DEAD_LETTER_MAX_BYTES,
        topic_types={
            settings.orders_topic: frozenset({"OrderCreated"}),
            settings.dasher_events_topic: frozenset({"DasherEvent", "MarketSupplySnapshot"}),
            settings.deliveries_topic: frozenset({"OrderDelivered"}),
        },
    )

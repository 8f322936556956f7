"""Build the stream worker's parts from ``Settings``: the one place the engines meet config.

Called from the command's entry point (and from tests with their own settings); everything
below receives plain values and ready clients.
"""

from __future__ import annotations

from collections.abc import Callable

import redis

from predictor.engines.confluent import ConfluentWorker
from predictor.engines.options import engine_options, pipeline_config
from predictor.serving.metrics import StreamMetrics
from predictor.serving.pipeline import ScoringModel
from stream_features.kafka_clients import consumer_config, producer_config
from stream_features.settings import Settings
from stream_features.vectors import FeatureSource

__all__ = ["RETRY_ON", "confluent_worker", "redis_features"]

RETRY_ON: tuple[type[BaseException], ...] = (redis.RedisError, ConnectionError, TimeoutError)
"""Feature-store failures that make the engine read the batch again instead of crashing."""


def redis_features(settings: Settings, redis_url: str, key_prefix: str = "") -> FeatureSource:
    """The Redis feature source with the settings' lateness and TTLs."""
    from stream_features.redis_windows import RedisFeatureSource

    client = redis.Redis.from_url(
        redis_url, socket_timeout=10.0, socket_connect_timeout=2.0, health_check_interval=30
    )
    return RedisFeatureSource(
        client,
        key_prefix=key_prefix,
        lateness_s=settings.lateness_s,
        dedup_ttl_s=settings.dedup_ttl_s,
        entity_ttl_s=settings.entity_ttl_s,
    )


def confluent_worker(
    settings: Settings,
    features: FeatureSource,
    models: Callable[[], ScoringModel],
    metrics: StreamMetrics | None = None,
) -> ConfluentWorker:
    """A worker in ``settings.consumer_group`` reading the three source topics."""
    return ConfluentWorker(
        consumer_config(settings),
        producer_config(settings),
        features,
        models,
        pipeline_config(settings),
        engine_options(settings),
        metrics=metrics,
        retry_on=RETRY_ON,
    )

"""Build the stream worker's parts from ``Settings``: the one place the engines meet config.

Called from the command's entry point (and from tests with their own settings); everything
below receives plain values and ready clients.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from predictor.engines.confluent import ConfluentWorker
from predictor.engines.errors import EngineConfigError
from predictor.engines.options import engine_options, pipeline_config
from predictor.serving.metrics import StreamMetrics
from predictor.serving.pipeline import BatchResult, ScoringModel
from predictor.serving.shadow_stage import ShadowStage, kafka_shadow_stage
from stream_features.kafka_clients import Output, consumer_config, producer_codec, producer_config
from stream_features.redis_client import REDIS_ERRORS, redis_client
from stream_features.settings import Settings
from stream_features.vectors import FeatureSource

if TYPE_CHECKING:
    from predictor.engines.faust_app import FaustWorker
    from predictor.models.handle import ModelHandle

__all__ = [
    "CO_PARTITIONED",
    "FETCH_WAIT_MAX_MS",
    "RETRY_ON",
    "WORKER_WRITES",
    "confluent_worker",
    "faust_worker",
    "redis_features",
    "shadow_stage",
]

RETRY_ON: tuple[type[BaseException], ...] = (*REDIS_ERRORS, ConnectionError, TimeoutError)
"""Feature-store failures that make the engine read the batch again instead of crashing."""


WORKER_WRITES: tuple[Output, ...] = ("predictions", "dlq")
"""The worker's one producer writes predictions and dead letters: it compresses with
``producer_codec`` of the two (gzip by default, which kafkajs and every other client read)."""

FETCH_WAIT_MAX_MS = 50
"""The worker's bound on a fetch's long poll (``_latency_tuning`` says why not 10 ms)."""

CO_PARTITIONED = {"partition.assignment.strategy": "range"}
"""Partition p of orders, deliveries and dasher-events goes to one member, whose feature state
(``redis_windows``) holds all three: the range assignor guarantees it for topics with the same
partition count, as etastream creates them; round-robin and cooperative-sticky do not."""


def redis_features(settings: Settings, redis_url: str, key_prefix: str = "") -> FeatureSource:
    """The Redis feature source with the settings' lateness and TTLs."""
    from stream_features.redis_windows import RedisFeatureSource

    client = redis_client(
        redis_url,
        socket_timeout=settings.stream_redis_timeout_s,
        socket_connect_timeout=2.0,
        health_check_interval=30,
    )
    return RedisFeatureSource(
        client,
        key_prefix=key_prefix,
        lateness_s=settings.lateness_s,
        dedup_ttl_s=settings.dedup_ttl_s,
        entity_ttl_s=settings.entity_ttl_s,
    )


def _latency_tuning(settings: Settings) -> tuple[dict[str, Any], dict[str, Any]]:
    """Consumer and producer overrides of the worker, each unless ETA_KAFKA__ sets it.

    The broker's long poll is bounded at 50 ms (``FETCH_WAIT_MAX_MS``, or the batch time bound
    if longer). Kafka answers a fetch as soon as data arrives, so on Kafka this only changes how
    often an idle worker asks. Tansu, the embedded broker, answers late (p50 130 ms at
    librdkafka's default 500 ms), but a short wait starves a backlog: reading a partition made
    of many small record batches (what a paced ``eta produce replay`` or a live simulation
    writes) takes it longer than a 10 ms wait, and then it answers with one batch or none. A
    consumer with a 10 ms wait had read 666k of the README backlog's 757k records after 90 s,
    its last partitions at ~100 records/s; with 50 ms it read them all in 8.8 s, with 100 ms in
    5.5 s (issue #22; docs/streaming.md, "Old events behind live ones"). A live record costs
    ~10 ms more at 50 ms than at 10 ms (tail read p50 17 against 7 ms; measured). The producer
    sends a batch's records as they are queued (``linger.ms`` 1): they are produced in one burst
    already, so waiting to fill batches only adds latency. The consumer prefetches 16 MB rather
    than librdkafka's 64 MB: a few batches ahead is all the loop can use, and it keeps the
    worker's memory down while it drains a backlog.

    >>> _latency_tuning(Settings(batch_max_wait_ms=5))
    ({'fetch.wait.max.ms': 50, 'queued.max.messages.kbytes': 16384}, {'linger.ms': 1})
    >>> _latency_tuning(Settings(kafka={"fetch_wait_max_ms": "100", "linger_ms": "20"}))
    ({'queued.max.messages.kbytes': 16384}, {})
    """
    given = settings.kafka_config()
    wanted_consumer = {
        "fetch.wait.max.ms": max(settings.batch_max_wait_ms, FETCH_WAIT_MAX_MS),
        "queued.max.messages.kbytes": 16384,
    }
    consumer = {k: v for k, v in wanted_consumer.items() if k not in given}
    producer = {} if "linger.ms" in given else {"linger.ms": 1}
    return consumer, producer


def confluent_worker(
    settings: Settings,
    features: FeatureSource,
    models: Callable[[], ScoringModel],
    metrics: StreamMetrics | None = None,
    after_scored: Callable[[BatchResult], None] | None = None,
    shadow: ShadowStage | None = None,
) -> ConfluentWorker:
    """A worker in ``settings.consumer_group`` reading the three source topics; with
    ``shadow`` (``shadow_stage``) a challenger scores every batch too."""
    consumer_tuning, producer_tuning = _latency_tuning(settings)
    return ConfluentWorker(
        {**CO_PARTITIONED, **consumer_config(settings), **consumer_tuning},
        {**producer_config(settings, writes=WORKER_WRITES), **producer_tuning},
        features,
        models,
        pipeline_config(settings),
        engine_options(settings),
        metrics=metrics,
        retry_on=RETRY_ON,
        after_scored=after_scored,
        shadow=shadow,
    )


def shadow_stage(settings: Settings, handle: ModelHandle, metrics: StreamMetrics) -> ShadowStage:
    """The shadow of ``handle`` (the model at ``settings.shadow_stage``), with a producer of its
    own writing ``settings.shadow_topic``: not idempotent, one ack, no retries to wait for
    (at most once), so it holds nothing of the primary's back."""
    from predictor.models.shadow import ShadowScorer

    return kafka_shadow_stage(
        producer_config(settings, writes=("predictions",)),
        settings.shadow_topic,
        ShadowScorer(handle, keep=10),
        scored=metrics.shadow_predictions,
        failures=metrics.shadow_failures,
    )


def faust_worker(
    settings: Settings,
    features: FeatureSource,
    models: Callable[[], ScoringModel],
    metrics: StreamMetrics | None = None,
    after_scored: Callable[[BatchResult], None] | None = None,
    shadow: ShadowStage | None = None,
) -> FaustWorker:
    """The same worker as a Faust app (``pip install etastream[faust]``); with ``shadow``, a
    challenger scores every batch too, as in ``confluent_worker``."""
    from predictor.engines.faust_app import FaustWorker

    if settings.kafka:
        raise EngineConfigError(
            "the faust engine does not read ETA_KAFKA__* (librdkafka settings); "
            "use --engine confluent with a secured cluster"
        )
    if settings.exactly_once:
        raise EngineConfigError(
            "ETA_EXACTLY_ONCE needs Kafka transactions, which only the confluent engine uses; "
            "drop --engine faust or unset ETA_EXACTLY_ONCE"
        )
    return FaustWorker(
        settings.kafka_bootstrap_servers or "",
        settings.consumer_group,
        features,
        models,
        pipeline_config(settings),
        engine_options(settings),
        metrics=metrics,
        retry_on=RETRY_ON,
        session_timeout_s=settings.session_timeout_ms / 1000,
        after_scored=after_scored,
        compression=producer_codec(settings, WORKER_WRITES),
        shadow=shadow,
    )

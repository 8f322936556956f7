"""Build the HTTP API from ``Settings``: the one place the app meets configuration.

``eta serve`` calls ``build_app`` with the settings it read; with ``--workers N`` uvicorn
starts N processes, each of which calls ``app_from_env`` (its own entry point) to read them.

With ``ETA_SHADOW_STAGE`` set, ``api_shadow`` adds the stream worker's shadow (``ShadowStage``,
a producer of its own writing ``ETA_SHADOW_TOPIC``); without a broker configured, or with one
it cannot set up, the API serves without it and says so in its log.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

import redis
from fastapi import FastAPI

from predictor.api.app import create_app
from predictor.api.loop_redis import api_redis
from predictor.api.metrics import ApiMetrics
from predictor.api.routes import ApiConfig
from predictor.engines.options import pipeline_config
from predictor.serving.shadow_stage import ShadowStage, kafka_shadow_stage
from predictor.serving.store_faults import check_eviction_policy
from stream_features.errors import EtaError
from stream_features.kafka_clients import ensure_topics, producer_config
from stream_features.settings import Settings

if TYPE_CHECKING:
    from predictor.models.handle import ModelHandle

__all__ = [
    "SHADOW_FLUSH_S",
    "SHADOW_MAX_PENDING",
    "ApiConfigError",
    "api_config",
    "api_shadow",
    "app_from_env",
    "build_app",
]

log = logging.getLogger("etastream.api")

SHADOW_MAX_PENDING = 256
"""Scored batches the API's shadow holds for its thread before it drops (``busy``). The
worker's four are batches of hundreds of orders; the API's are a request or a few, so the
same memory holds many more of them, and a burst of requests is shadowed rather than dropped."""

SHADOW_FLUSH_S = 5.0
"""At shutdown, how long the API waits for its shadow records to reach the broker (at most
once: what is still queued then is lost, never an answer)."""


class ApiConfigError(EtaError):
    """The API has nothing to serve from: no Redis configured."""

    def __init__(self) -> None:
        super().__init__(
            "ETA_REDIS_URL is not set: the API reads the stream's feature state and the model "
            "registry's pointers from Redis. Start a stack with `eta up` and export the ETA_* "
            "lines it prints, or point ETA_REDIS_URL at your Redis",
        )


def api_config(settings: Settings, key_prefix: str = "") -> ApiConfig:
    """The app's plain values from the settings."""
    return ApiConfig(
        key_prefix=key_prefix,
        api_key=settings.api_key.get_secret_value() if settings.api_key else None,
        max_request_bytes=settings.max_request_bytes,
        cors_origins=tuple(settings.cors_origins),
        max_inflight=settings.api_max_inflight,
        model_name=settings.model_name,
        serve_stage=settings.serve_stage,
        stream=pipeline_config(settings),  # the worker's limits, so both read orders alike
    )


def build_app(settings: Settings, key_prefix: str = "") -> FastAPI:
    """The app over the settings' Redis, following ``model_name@serve_stage``.

    Raises ``ApiConfigError`` without a Redis URL and ``redis.RedisError`` when Redis does not
    answer at start (the model handle subscribes to the registry's channel).
    """
    from predictor.models.handle import ModelHandle

    url = settings.redis_url_value()
    if url is None:
        raise ApiConfigError()
    client, async_client = api_redis(url, settings.api_redis_timeout_s)
    check_eviction_policy(client, log)
    handle = ModelHandle.following(settings, client)
    metrics = ApiMetrics(handle.peek)
    shadow = api_shadow(settings, client, metrics)

    def close() -> None:
        if shadow is not None:
            shadow.close(SHADOW_FLUSH_S)
            shadow.scorer.handle.close()
        handle.close()
        client.close()

    return create_app(
        api_config(settings, key_prefix),
        client,
        handle,
        async_client=async_client,
        on_close=close,
        metrics=metrics,
        shadow=shadow,
    )


def api_shadow(settings: Settings, client: redis.Redis, metrics: ApiMetrics) -> ShadowStage | None:
    """The worker's shadow for the API: the model at ``settings.shadow_stage`` (followed as the
    primary is), writing ``ShadowPrediction`` records to ``settings.shadow_topic``; None when
    the stage is unset, or (logged) when no broker is configured or its producer cannot be
    made: the shadow is optional, the answers never wait for it."""
    from predictor.models.handle import ModelHandle
    from predictor.models.shadow import ShadowScorer

    stage = settings.shadow_stage
    if stage is None:
        return None
    if not settings.kafka_bootstrap_servers:
        log.warning(
            "ETA_SHADOW_STAGE=%s but ETA_KAFKA_BOOTSTRAP_SERVERS is not set: the API has nowhere "
            "to write its shadow records and serves without a shadow",
            stage,
        )
        return None
    threading.Thread(  # off the start-up path: a broker that is down never delays the API
        target=_create_shadow_topic, args=(settings,), name="eta-shadow-topic", daemon=True
    ).start()
    shadow_handle: ModelHandle = ModelHandle.following(settings, client, stage)
    try:
        return kafka_shadow_stage(
            producer_config(settings, writes=("predictions",)),
            settings.shadow_topic,
            ShadowScorer(shadow_handle, keep=10),
            scored=metrics.shadow_predictions,
            failures=metrics.shadow_failures,
            max_pending=SHADOW_MAX_PENDING,
        )
    except Exception as exc:  # a bad producer config: serve, without the shadow
        shadow_handle.close()
        log.warning("the API serves without its shadow: no producer for it (%s)", exc)
        return None


def _create_shadow_topic(settings: Settings) -> None:
    """Create the shadow topic with its configs, as the worker and ``eta up`` do: a broker
    without topic auto-creation refuses the records until it exists."""
    try:
        ensure_topics(settings, topics=[settings.shadow_topic])
    except Exception as exc:  # down, or refusing: the shadow is optional, the answers go on
        log.warning(
            "could not create the shadow topic %s (%s): the API's shadow records are refused "
            "until it exists (eta up creates it)",
            settings.shadow_topic,
            exc,
        )


def app_from_env() -> FastAPI:
    """Entry point of each uvicorn worker process (``--workers`` > 1)."""
    return build_app(Settings())

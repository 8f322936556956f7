"""Build the HTTP API from ``Settings``: the one place the app meets configuration.

``eta serve`` calls ``build_app`` with the settings it read; with ``--workers N`` uvicorn
starts N processes, each of which calls ``app_from_env`` (its own entry point) to read them.
"""

from __future__ import annotations

import logging

import redis
from fastapi import FastAPI
from redis.backoff import NoBackoff
from redis.retry import Retry

from predictor.api.app import create_app
from predictor.api.routes import ApiConfig
from predictor.engines.options import pipeline_config
from predictor.serving.store_faults import check_eviction_policy
from stream_features.errors import EtaError
from stream_features.redis_client import redis_client
from stream_features.settings import Settings

__all__ = ["ApiConfigError", "api_config", "app_from_env", "build_app", "fast_retry"]

log = logging.getLogger("etastream.api")


class ApiConfigError(EtaError):
    """The API has nothing to serve from: no Redis configured."""

    def __init__(self) -> None:
        super().__init__(
            "ETA_REDIS_URL is not set: the API reads the stream's feature state and the model "
            "registry's pointers from Redis. Start a stack with `eta up` and export the ETA_* "
            "lines it prints, or point ETA_REDIS_URL at your Redis",
        )


def fast_retry() -> Retry:
    """One immediate retry of a connection Redis closed (while idle), then the error: redis-py's
    default backs off for seconds, which would hold a request and the event loop that long
    before its 503. A timeout is not retried: a Redis that did not answer in time (hung, or
    stopped) would only make the request wait that long again."""
    return Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))


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
    client = redis_client(
        url,
        socket_timeout=settings.api_redis_timeout_s,
        socket_connect_timeout=settings.api_redis_timeout_s,
        health_check_interval=30,
        retry=fast_retry(),
    )
    check_eviction_policy(client, log)
    handle = ModelHandle.following(settings, client)

    def close() -> None:
        handle.close()
        client.close()

    return create_app(api_config(settings, key_prefix), client, handle, on_close=close)


def app_from_env() -> FastAPI:
    """Entry point of each uvicorn worker process (``--workers`` > 1)."""
    return build_app(Settings())

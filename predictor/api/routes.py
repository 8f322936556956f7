"""The routes: health, readiness, metrics, online predictions, streamed and batch lookups.

Handlers are ``async`` and never block the event loop on Redis: predictions (through the
batcher), readiness and streamed lookups await the asyncio client (``loop_redis``); the rare
heavier ones (``explain=true``, a store's batch ETAs) run on threads with the blocking client.
Both clients' timeouts (``ETA_API_REDIS_TIMEOUT_S``) bound a stalled Redis, and ``/healthz``
does no I/O, so it answers while Redis hangs.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol

import redis
from fastapi import APIRouter, Path, Query, Request, Response

from predictor.api import schemas
from predictor.api.batcher import OnlineBatcher
from predictor.api.errors import (
    NotReady,
    PredictionNotFound,
    StoreEtaNotFound,
    UnusablePrediction,
)
from predictor.api.loop_redis import LoopRedis
from predictor.api.metrics import ApiMetrics
from predictor.api.parsing import parse_orders
from predictor.api.predict import ShadowHook, predict_orders, score_rows
from predictor.batch_scoring.store import BatchPredictionStore
from predictor.serving.latest import latest_key
from predictor.serving.pipeline import PipelineConfig, ScoringModel
from stream_features.contract import DeliveryPrediction, OrderCreated
from stream_features.online import online_source
from stream_features.redis_client import REDIS_ERRORS
from stream_features.redis_plan import run_plan_async
from stream_features.vectors import FeatureRows

__all__ = ["ApiConfig", "ModelSource", "Services", "build_router", "model_or_503"]

_JSON = "application/json"
_UNREACHABLE: tuple[type[Exception], ...] = (*REDIS_ERRORS, OSError)
_ID_PATTERN = r"^[A-Za-z0-9_.:\-]+$"


class ModelSource(Protocol):
    """Where the API gets its model (``ModelHandle`` in production): None until one is set."""

    def peek(self) -> ScoringModel | None: ...


@dataclass(frozen=True)
class ApiConfig:
    """Plain values the app runs with (the command builds them from ``Settings``).

    ``stream`` is the stream core's config, built by the worker's own ``pipeline_config``: its
    ``max_message_bytes`` and ``max_future_skew_s`` bound each order the API reads.
    """

    key_prefix: str = ""
    api_key: str | None = None
    max_request_bytes: int = 2_000_000
    max_orders: int = 1000
    cors_origins: tuple[str, ...] = ()
    max_inflight: int = 8
    model_name: str = "eta"
    serve_stage: str = "production"
    stream: PipelineConfig = field(default_factory=PipelineConfig)


@dataclass(frozen=True)
class Services:
    config: ApiConfig
    client: redis.Redis  # blocking: for the reads that run on threads
    aredis: LoopRedis  # asyncio: for the reads the handlers await
    models: ModelSource
    metrics: ApiMetrics
    batch: BatchPredictionStore
    shadow: ShadowHook | None = None  # ETA_SHADOW_STAGE: handed every batch once it is scored


def model_or_503(models: ModelSource, config: ApiConfig) -> ScoringModel:
    """The model to score with now, or 503 with the reason."""
    model = models.peek()
    if model is None:
        raise NotReady([f"no model at {config.model_name}@{config.serve_stage} yet"])
    return model


def batcher(services: Services) -> OnlineBatcher:
    """The online batcher over the services' Redis, prefix and model source."""
    config = services.config
    source = online_source(services.client, config.key_prefix)  # its caches: one per process

    async def read(orders: Sequence[OrderCreated]) -> FeatureRows:
        return await run_plan_async(services.aredis.client(), source.read_plan(orders))

    def score(rows: FeatureRows, model: ScoringModel) -> list[bytes | UnusablePrediction]:
        return score_rows(rows, model, shadow=services.shadow)

    return OnlineBatcher(
        read,
        score,
        lambda: model_or_503(services.models, config),
        observe=services.metrics.batch_orders.observe,
        unavailable=REDIS_ERRORS,
    )


def _error(status: int, model: type[Any], what: str) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": model, "description": what}}


_BAD_INPUT = _error(422, schemas.ValidationErrorBody, "a parameter or field breaks the contract")
_UNAVAILABLE = _error(
    503,
    schemas.ErrorBody,
    "no model loaded yet, Redis is unreachable, or the API is overloaded (ETA_API_MAX_INFLIGHT "
    "requests in progress: answered at once, with Retry-After)",
)


def build_router(services: Services) -> APIRouter:
    """Every route, bound to ``services`` (see the module docstring for how each reaches Redis)."""
    router = APIRouter()
    config, client, aredis = services.config, services.client, services.aredis
    online = batcher(services)

    @router.get("/healthz", response_model=schemas.Health, tags=["operations"])
    async def healthz() -> Response:
        """Alive: the process answers. Always open, even with an API key set."""
        return Response(b'{"status":"alive"}', media_type=_JSON)

    @router.get(
        "/readyz",
        response_model=schemas.Ready,
        tags=["operations"],
        responses={503: {"model": schemas.NotReadyBody, "description": "not ready, and why"}},
    )
    async def readyz() -> Response:
        """Ready to predict: Redis answers and a model is loaded."""
        reasons = []
        try:
            await aredis.client().ping()
        except _UNREACHABLE as exc:
            reasons.append(f"Redis is unreachable ({type(exc).__name__})")
        model = services.models.peek()
        if model is None:
            reasons.append(f"no model at {config.model_name}@{config.serve_stage} yet")
        if reasons or model is None:
            raise NotReady(reasons)
        body = schemas.Ready(
            status="ready",
            model_name=model.name,
            model_version=model.version,
            backend=getattr(model, "backend", None),
        )
        return Response(body.model_dump_json().encode(), media_type=_JSON)

    @router.get(
        "/metrics",
        tags=["operations"],
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
    )
    async def metrics() -> Response:
        """Prometheus metrics: requests by route and status, latency, the model in use."""
        return Response(services.metrics.render(), media_type="text/plain; version=0.0.4")

    @router.post(
        "/v1/predictions",
        response_model=schemas.PredictionAnswer,
        tags=["predictions"],
        openapi_extra={
            "requestBody": schemas.request_body_schema(config.max_orders, config.stream)
        },
        responses={
            **_error(413, schemas.ErrorBody, "the body is over ETA_MAX_REQUEST_BYTES"),
            **_BAD_INPUT,
            **_error(
                409,
                schemas.ErrorBody,
                "explain=true, and the model served cannot explain in seconds (not LightGBM, "
                "or trained on log seconds)",
            ),
            **_UNAVAILABLE,
        },
    )
    async def predict(
        request: Request,
        explain: Annotated[
            bool,
            Query(
                description="add each input's contribution in seconds and the top five as "
                "text (`explanation`); scored apart from the shared micro-batch"
            ),
        ] = False,
    ) -> Response:
        """Predict the delivery duration of one order or a list of up to 1000, now.

        Orders are read by the stream's rules (what the worker would dead-letter is a 422 that
        names the field and gives the dead letter's reason): JSON types as the contract has
        them (no booleans for numbers), ``created_at`` within 2000..2100 and at most
        ETA_MAX_FUTURE_SKEW_S ahead of now, each order within ETA_MAX_MESSAGE_BYTES.

        The features are read from the stream's state as the stream would read them for the
        order at this moment (without applying it); the answer is the stream's
        DeliveryPrediction with ``mode`` "online", scored by the production model, with its
        ETA range (``predicted_duration_p10_s`` .. ``_p90_s``) when the model has one.
        Concurrent requests share one feature read and one predict (see
        ``predictor.api.batcher``). With ``explain=true`` each answer also carries
        ``explanation``: the model's bias and each input's contribution in seconds (they sum
        to the prediction), and the five largest as text.
        """
        found: Counter[str] = Counter()
        orders, many = parse_orders(
            await request.body(), config.max_orders, stream=config.stream, findings=found
        )
        model = model_or_503(services.models, config)  # before parking: 503 without a model
        if explain:  # rare and heavier (SHAP over every tree): not in the shared batch
            values = await asyncio.to_thread(
                predict_orders,
                client,
                orders,
                model,
                key_prefix=config.key_prefix,
                explain=True,
                shadow=services.shadow,
            )
        else:
            values = await online.predict(orders)
        services.metrics.predictions.inc(len(values))
        for rule, n in found.items():
            services.metrics.findings.labels(rule).inc(n)
        body = b"[" + b",".join(values) + b"]" if many else values[0]
        return Response(body, media_type=_JSON)

    @router.get(
        "/v1/predictions/{order_id}",
        response_model=DeliveryPrediction,
        tags=["predictions"],
        responses={
            **_error(404, schemas.ErrorBody, "the stream has no (unexpired) prediction for it"),
            **_BAD_INPUT,
            **_UNAVAILABLE,
        },
    )
    async def streamed_prediction(
        order_id: Annotated[str, Path(min_length=1, max_length=64, pattern=_ID_PATTERN)],
    ) -> Response:
        """The prediction the stream produced for this order, byte for byte as on the topic."""
        value = await aredis.client().get(latest_key(config.key_prefix, order_id))
        if not isinstance(value, bytes):
            raise PredictionNotFound(order_id)
        return Response(value, media_type=_JSON)

    @router.get(
        "/v1/stores/{store_id}/eta",
        response_model=schemas.StoreEta,
        tags=["predictions"],
        responses={
            **_error(404, schemas.ErrorBody, "no batch run yet, or not an active store"),
            **_BAD_INPUT,
            **_UNAVAILABLE,
        },
    )
    async def store_eta(
        store_id: Annotated[str, Path(min_length=1, max_length=64, pattern=_ID_PATTERN)],
    ) -> Response:
        """The ETAs `eta predict batch` precomputed for the store, one per hour slot ahead."""
        version, value = await asyncio.to_thread(services.batch.read, store_id)
        if value is None:
            raise StoreEtaNotFound(store_id, version)
        return Response(value, media_type=_JSON)

    return router

"""The FastAPI app factory: routes, error mapping, middleware and a complete OpenAPI spec.

``create_app`` takes ready parts (a Redis client and what makes its asyncio twin, a model
source, plain config), so tests build apps around their own Redis prefix and model;
``predictor.api.wiring`` builds them from ``Settings`` for ``eta serve``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
import redis
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from pydantic import TypeAdapter
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware

from predictor.api import schemas
from predictor.api.errors import ApiError, FieldProblem, InvalidRequest, NotReady
from predictor.api.loop_redis import LoopRedis
from predictor.api.metrics import ApiMetrics
from predictor.api.middleware import ApiKeyAuth, BodyLimit, ConcurrencyLimit, RequestContext
from predictor.api.parsing import MAX_PROBLEMS
from predictor.api.predict import ShadowHook
from predictor.api.routes import ApiConfig, ModelSource, Services, build_router
from predictor.batch_scoring.store import BatchPredictionStore
from predictor.errors import ExplainUnavailable
from predictor.serving.metrics import LoadFailures
from stream_features.redis_client import REDIS_ERRORS

__all__ = ["create_app"]

log = logging.getLogger("etastream.api")
_OPEN_PATHS = ("/healthz",)
DESCRIPTION = """Delivery-time predictions from the same features and model as the stream.

* `POST /v1/predictions` scores orders now; `GET /v1/predictions/{order_id}` returns what the
  stream predicted; `GET /v1/stores/{store_id}/eta` returns `eta predict batch`'s ETAs.
* Errors are JSON: `{"detail": ..., "request_id": ...}`, or for 422 a list of field problems.
* With `ETA_API_KEY` set, every route but `/healthz` needs `X-API-Key` or a bearer token.
"""


_RETRY_AFTER = {
    "description": "when overloaded: seconds to wait before trying again",
    "schema": {"type": "integer"},
}
_OVERLOADED = {
    "description": "the API is overloaded (ETA_API_MAX_INFLIGHT requests in progress)",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
}


def _json(status: int, body: dict[str, Any], request: Request) -> Response:
    body["request_id"] = getattr(request.state, "request_id", None)
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _field_errors(problems: list[FieldProblem]) -> list[dict[str, Any]]:
    return [{"loc": list(p.loc), "field": p.field, "msg": p.msg, "type": p.type} for p in problems]


def _install_handlers(app: FastAPI) -> None:
    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        if isinstance(exc, InvalidRequest):
            return _json(422, {"detail": _field_errors(exc.problems)}, request)
        body: dict[str, Any] = {"detail": str(exc)}
        if isinstance(exc, NotReady):
            body["reasons"] = exc.reasons
        return _json(exc.http_status, body, request)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        problems = [
            FieldProblem(tuple(e["loc"]), str(e["msg"]), str(e["type"])) for e in exc.errors()
        ][:MAX_PROBLEMS]
        return _json(422, {"detail": _field_errors(problems)}, request)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        response = _json(exc.status_code, {"detail": str(exc.detail)}, request)
        for key, value in (exc.headers or {}).items():
            response.headers[key] = value
        return response

    async def redis_down(request: Request, exc: Exception) -> Response:
        log.warning(
            "Redis error during a request",
            extra={"request_id": getattr(request.state, "request_id", None), "error": repr(exc)},
        )
        detail = "the feature store (Redis) is unavailable; retry shortly"
        return _json(503, {"detail": detail}, request)

    async def cannot_explain(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ExplainUnavailable)
        return _json(exc.http_status, {"detail": str(exc)}, request)

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(ExplainUnavailable, cannot_explain)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    for error in REDIS_ERRORS:  # a cluster's own (no node for a slot) are no RedisError
        app.add_exception_handler(error, redis_down)


def _openapi(app: FastAPI, config: ApiConfig) -> Callable[[], dict[str, Any]]:
    """FastAPI's spec plus the request model it cannot see (the body is parsed by hand), the
    error bodies on every operation, and the API-key schemes when a key is set."""

    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        spec = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = spec.setdefault("components", {}).setdefault("schemas", {})
        for model in schemas.RequestModels:
            adapter: TypeAdapter[Any] = TypeAdapter(model)
            found = adapter.json_schema(ref_template="#/components/schemas/{model}")
            components.update(found.pop("$defs", {}))
            components[model.__name__] = found
        components.setdefault("ErrorBody", schemas.ErrorBody.model_json_schema())
        for path, operations in spec["paths"].items():
            if not path.startswith("/v1/"):
                continue
            for operation in operations.values():  # ConcurrencyLimit may shed any of them
                answer = operation["responses"].setdefault("503", dict(_OVERLOADED))
                answer["headers"] = {"Retry-After": _RETRY_AFTER}
        if config.api_key:
            spec["components"]["securitySchemes"] = {
                "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "Bearer": {"type": "http", "scheme": "bearer"},
            }
            unauthorized = {
                "description": "missing or wrong API key",
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}
                },
            }
            for path, operations in spec["paths"].items():
                if path in _OPEN_PATHS:
                    continue
                for operation in operations.values():
                    operation["security"] = [{"ApiKey": []}, {"Bearer": []}]
                    operation["responses"]["401"] = unauthorized
        app.openapi_schema = spec
        return spec

    return build


def create_app(
    config: ApiConfig,
    client: redis.Redis,
    models: ModelSource,
    *,
    async_client: Callable[[], Any],
    on_close: Callable[[], None] | None = None,
    metrics: ApiMetrics | None = None,
    shadow: ShadowHook | None = None,
) -> FastAPI:
    """The HTTP API over the stream's Redis and ``models``: ``client`` blocks (the reads on
    threads), ``async_client`` makes the asyncio client of the same Redis that the handlers
    await (``loop_redis.api_async_redis``). ``on_close`` runs at shutdown (close the model
    handle and the client); ``metrics``: the app's own when None; ``shadow``
    (``ETA_SHADOW_STAGE``) is handed every scored batch (``predictor.api.predict``).
    """
    aredis = LoopRedis(async_client)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await aredis.aclose()
            if on_close is not None:
                on_close()

    app = FastAPI(
        title="etastream",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    metrics = metrics or ApiMetrics(models.peek)
    metrics.registry.register(LoadFailures(lambda: int(getattr(models, "load_failures", 0))))
    batch = BatchPredictionStore(client, config.key_prefix)
    app.include_router(
        build_router(Services(config, client, aredis, models, metrics, batch, shadow))
    )
    _install_handlers(app)
    # add_middleware puts each one outside the ones before it: innermost first
    app.add_middleware(BodyLimit, max_bytes=config.max_request_bytes)
    app.add_middleware(ApiKeyAuth, api_key=config.api_key, open_paths=_OPEN_PATHS)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(config.cors_origins),
        allow_methods=["GET", "POST"],
        allow_headers=["Content-Type", "X-API-Key", "Authorization", "X-Request-ID"],
        expose_headers=["X-Request-ID"],
    )
    app.add_middleware(ConcurrencyLimit, max_inflight=config.max_inflight, on_shed=metrics.shed.inc)
    app.add_middleware(RequestContext, metrics=metrics)
    app.openapi = _openapi(app, config)  # type: ignore[method-assign]  # FastAPI's documented way to customise the schema
    app.state.metrics = metrics
    return app

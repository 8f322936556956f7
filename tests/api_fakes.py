"""Apps for the API's unit tests: a fixed model, a Redis client that reaches nothing.

The unit tests exercise everything that happens before the feature read (auth, limits,
parsing, errors, the spec); the integration tests cover the rest against a real Redis.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import redis
from fastapi import FastAPI

from predictor.api import ApiConfig, create_app
from predictor.api.loop_redis import api_async_redis, api_redis
from predictor.serving.pipeline import ScoringModel
from stream_features.redis_client import is_cluster

__all__ = [
    "AppClient",
    "FixedModel",
    "Models",
    "async_twin",
    "call",
    "dead_redis",
    "order_json",
    "unit_app",
]


class FixedModel:
    """Predicts the same duration for every row."""

    name, version, backend = "fixed", "1", "constant"

    def __init__(self, seconds: float = 1800.0) -> None:
        self.seconds = seconds

    def predict(self, values: npt.NDArray[np.float64], /) -> npt.NDArray[np.float64]:
        return np.full(len(values), self.seconds)


class Models:
    """A model source the test controls (``ModelHandle`` in production)."""

    def __init__(self, model: ScoringModel | None = None) -> None:
        self.model = model
        self.fail: Exception | None = None

    def peek(self) -> ScoringModel | None:
        if self.fail is not None:
            raise self.fail
        return self.model


def async_twin(client: Any, timeout_s: float = 5.0) -> Callable[[], Any]:
    """What makes an asyncio client of the Redis (or Cluster) ``client`` reaches, as
    ``create_app`` wants it beside the blocking one (``eta serve`` makes both from its URL)."""
    if is_cluster(client):
        node = client.get_nodes()[0]
        return api_async_redis(f"redis+cluster://{node.host}:{node.port}/0", timeout_s)
    kwargs = client.connection_pool.connection_kwargs
    return api_async_redis(f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs['db']}", timeout_s)


def dead_redis() -> tuple[redis.Redis, Callable[[], Any]]:
    """A client for a port nothing listens on (connections fail at once), and what makes the
    asyncio one the app awaits (``create_app``'s two)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client, async_client = api_redis(f"redis://127.0.0.1:{port}/0", 0.5)
    return client, async_client


def unit_app(models: Models | None = None, **config: Any) -> FastAPI:
    client, async_client = dead_redis()
    return create_app(ApiConfig(**config), client, models or Models(), async_client=async_client)


def order_json(order_id: str = "o-1", **changes: Any) -> dict[str, Any]:
    order: dict[str, Any] = {
        "order_id": order_id,
        "created_at": "2026-01-01T12:00:00Z",
        "market_id": "m1",
        "store_id": "s1",
        "store_category": "pizza",
        "order_protocol": 1,
        "total_items": 3,
        "subtotal": 3000,
        "num_distinct_items": 2,
        "min_item_price": 500,
        "max_item_price": 1500,
        "estimated_order_place_duration_s": 300,
        "estimated_store_to_consumer_driving_duration_s": 600,
    }
    order.update(changes)
    return order


def call(
    app: FastAPI,
    method: str,
    url: str,
    *,
    chunks: Callable[[], AsyncIterator[bytes]] | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """One request to ``app`` in process; ``chunks`` streams the body (no Content-Length)."""

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            if chunks is not None:
                kwargs["content"] = chunks()
            return await client.request(method, url, **kwargs)

    return asyncio.run(go())


class AppClient:
    """A synchronous in-process client that also runs the app's startup and shutdown.

    (Starlette's TestClient warns about httpx under this Starlette; this needs only httpx.)
    """

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self._runner = asyncio.Runner()
        self._lifespan = app.router.lifespan_context(app)
        self._client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://api"
        )

    def __enter__(self) -> AppClient:
        self._runner.run(self._lifespan.__aenter__())
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._runner.run(self._client.aclose())
            self._runner.run(self._lifespan.__aexit__(None, None, None))
        finally:
            self._runner.close()

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self._runner.run(self._client.request(method, url, **kwargs))

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

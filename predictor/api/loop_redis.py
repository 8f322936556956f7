"""The API's Redis clients: a blocking one (for the reads that run on threads) and its asyncio
twin, which the handlers await, so a slow or hung Redis holds the requests that need it, never
the event loop (``/healthz`` answers). ``api_redis`` makes both with the same options.

An asyncio client belongs to the event loop it first runs on, and the app does not own its
loop (uvicorn's, or a test client's, one per ``with`` block): ``LoopRedis`` makes a client on
first use in a loop, makes a new one if the app finds itself in another loop, and closes its
client at the app's shutdown.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from typing import Any

from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry

from stream_features.redis_client import async_redis_client, redis_client

__all__ = ["LoopRedis", "api_async_redis", "api_redis", "fast_async_retry", "fast_retry"]


def fast_retry() -> Retry:
    """One immediate retry of a connection Redis closed (while idle), then the error: redis-py's
    default backs off for seconds, which would hold a request and the event loop that long
    before its 503. A timeout is not retried: a Redis that did not answer in time (hung, or
    stopped) would only make the request wait that long again."""
    return Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))


def fast_async_retry() -> AsyncRetry:
    """``fast_retry`` for the asyncio client."""
    return AsyncRetry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))


def _options(timeout_s: float) -> dict[str, Any]:
    """Both clients' options: every call bounded by ``timeout_s`` (``ETA_API_REDIS_TIMEOUT_S``)."""
    return {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "health_check_interval": 30,
    }


def api_async_redis(url: str, timeout_s: float) -> Callable[[], Any]:
    """What makes the API's asyncio client for ``url`` (``LoopRedis`` calls it per loop)."""
    return partial(async_redis_client, url, **_options(timeout_s), retry=fast_async_retry())


def api_redis(url: str, timeout_s: float) -> tuple[Any, Callable[[], Any]]:
    """The API's blocking client for ``url`` and what makes its asyncio twin: the two
    ``create_app`` takes, with the same timeouts."""
    client = redis_client(url, **_options(timeout_s), retry=fast_retry())
    return client, api_async_redis(url, timeout_s)


class LoopRedis:
    """The asyncio client of the running event loop; see the module docstring."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def client(self) -> Any:
        """The client for the running loop (made on first use in it)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client, self._loop = self._make(), loop
        return self._client

    async def aclose(self) -> None:
        """Close the client, if one was made in the running loop."""
        client, self._client = self._client, None
        if client is not None and self._loop is asyncio.get_running_loop():
            await client.aclose()

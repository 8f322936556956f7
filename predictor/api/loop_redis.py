"""The API's asyncio Redis client: the handlers await their round trips on it, so a slow or
hung Redis holds the requests that need it, never the event loop (``/healthz`` answers).

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

from stream_features.redis_client import async_redis_client

__all__ = ["LoopRedis", "api_async_redis", "fast_async_retry"]


def fast_async_retry() -> AsyncRetry:
    """``wiring.fast_retry`` for the asyncio client: one immediate retry of a connection Redis
    closed while idle, then the error; a timeout is not retried."""
    return AsyncRetry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))


def api_async_redis(url: str, timeout_s: float) -> Callable[[], Any]:
    """What makes the API's asyncio client for ``url``: every call bounded by ``timeout_s``
    (``ETA_API_REDIS_TIMEOUT_S``), as the blocking client beside it is."""
    return partial(
        async_redis_client,
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        health_check_interval=30,
        retry=fast_async_retry(),
    )


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

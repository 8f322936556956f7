"""``ConcurrencyLimit`` sheds the request over the limit at once, with Retry-After, and only
under /v1/."""

from __future__ import annotations

import asyncio

import orjson
from starlette.types import Message, Receive, Scope, Send

from predictor.api.middleware import ConcurrencyLimit


def _scope(path: str) -> Scope:
    return {"type": "http", "path": path, "method": "POST", "headers": [], "state": {}}


async def _receive() -> Message:
    return {"type": "http.request", "body": b"{}", "more_body": False}


def test_the_request_over_the_limit_is_shed_at_once() -> None:
    release = asyncio.Event()
    shed: list[int] = []

    async def slow(scope: Scope, receive: Receive, send: Send) -> None:
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    limit = ConcurrencyLimit(slow, max_inflight=2, on_shed=lambda: shed.append(1))

    async def call(path: str) -> list[Message]:
        sent: list[Message] = []

        async def send(message: Message) -> None:
            sent.append(message)

        await limit(_scope(path), _receive, send)
        return sent

    async def scenario() -> None:
        held = [asyncio.create_task(call("/v1/predictions")) for _ in range(2)]
        await asyncio.sleep(0)  # both are in the app now
        assert limit.inflight == 2
        over = await asyncio.wait_for(call("/v1/predictions"), 1)  # answered without waiting
        start, body = over
        assert start["status"] == 503 and (b"retry-after", b"1") in start["headers"]
        assert "ETA_API_MAX_INFLIGHT" in orjson.loads(body["body"])["detail"]
        health = asyncio.create_task(call("/healthz"))  # never shed
        await asyncio.sleep(0)
        release.set()
        for task in [*held, health]:
            assert (await task)[0]["status"] == 200
        assert limit.inflight == 0 and shed == [1]
        assert (await call("/v1/predictions"))[0]["status"] == 200  # recovered

    asyncio.run(scenario())

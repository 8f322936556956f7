"""Plain ASGI middleware: request ids, metrics and the last-resort 500; API keys; body limits.

Outermost first: ``RequestContext`` (an id for every request, the metrics, and a generic 500
for anything that escapes, its detail logged, never sent), ``ConcurrencyLimit`` (503 with
``Retry-After`` for what the app cannot take in time), CORS, ``ApiKeyAuth`` (401 before
the body is read), ``BodyLimit`` (413 before the body is parsed). Written as plain ASGI rather
than Starlette's ``BaseHTTPMiddleware``, which costs a task and a stream per request.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from predictor.api.errors import RequestTooLarge, Unauthorized
from predictor.api.metrics import ApiMetrics

__all__ = [
    "ApiKeyAuth",
    "BodyLimit",
    "ConcurrencyLimit",
    "RequestContext",
    "request_id",
    "send_json",
]

log = logging.getLogger("etastream.api")
_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:\-]{1,64}$")
INTERNAL_ERROR = "internal error; the server logged it under this request id"


def request_id(scope: Scope) -> str | None:
    """The id ``RequestContext`` gave this request."""
    state = scope.get("state")
    return state.get("request_id") if isinstance(state, dict) else None


async def send_json(
    scope: Scope,
    send: Send,
    status: int,
    body: dict[str, object],
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    """A whole JSON response; the request id is added to the body."""
    payload = orjson.dumps({**body, "request_id": request_id(scope)})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class RequestContext:
    """Give each request an id (a sane incoming ``X-Request-ID`` or a new one), echo it in
    the response, time and count the request, and turn any escaped exception into a 500."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        given = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"")
        rid = given.decode() if _REQUEST_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status, response_started = message["status"], True
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception(
                "unhandled error", extra={"request_id": rid, "path": scope.get("path", "")}
            )
            if not response_started:
                await send_json(scope, send_with_id, 500, {"detail": INTERNAL_ERROR})
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.observe(
                template, scope.get("method", ""), status, time.perf_counter() - started
            )


OVERLOADED = "the API is at its limit of requests in progress (ETA_API_MAX_INFLIGHT); retry after"


class ConcurrencyLimit:
    """At most ``max_inflight`` requests under ``prefix`` in the app at once; one more is
    answered 503 with ``Retry-After`` at once, before its body is read.

    Without it an overloaded server queues every request it accepted (in the event loop, the
    micro-batcher and Redis) and each one waits longer than the last: all answers come late.
    With it the ones taken are served in about the time they take unloaded and the rest learn
    at once to come back (docs/serving.md, "Overload"). One event loop per process, so a plain
    counter; with ``--workers N`` the limit is per process. Health, readiness and metrics are
    never shed: an orchestrator must see an overloaded server as alive.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_inflight: int,
        on_shed: Callable[[], None] | None = None,
        prefix: str = "/v1/",
        retry_after_s: int = 1,
    ) -> None:
        self.app, self.max_inflight, self._on_shed = app, max_inflight, on_shed
        self._prefix = prefix
        self._retry_after = str(retry_after_s).encode()
        self._detail = f"{OVERLOADED} {retry_after_s} s"
        self.inflight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self._prefix):
            await self.app(scope, receive, send)
            return
        if self.inflight >= self.max_inflight:
            if self._on_shed is not None:
                self._on_shed()
            await send_json(
                scope, send, 503, {"detail": self._detail}, [(b"retry-after", self._retry_after)]
            )
            return
        self.inflight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.inflight -= 1


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


class ApiKeyAuth:
    """With a key set, every path but the open ones needs it, as ``X-API-Key`` or a bearer token.

    Both sides are hashed before ``hmac.compare_digest``, so neither the key's bytes nor its
    length show in the time a wrong guess takes. The key given is never logged or echoed.
    """

    def __init__(
        self, app: ASGIApp, api_key: str | None, open_paths: Iterable[str] = ("/healthz",)
    ) -> None:
        self.app = app
        self._digest = _digest(api_key.encode()) if api_key else None
        self._open = frozenset(open_paths)

    def allowed(self, headers: Iterable[tuple[bytes, bytes]]) -> bool:
        assert self._digest is not None
        ok = False
        for name, value in headers:
            if name == b"x-api-key":
                candidate = value.strip()
            elif name == b"authorization" and value[:7].lower() == b"bearer ":
                candidate = value[7:].strip()
            else:
                continue
            ok |= hmac.compare_digest(_digest(candidate), self._digest)
        return ok

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self._digest is None
            or scope["type"] != "http"
            or scope["path"] in self._open
            or self.allowed(scope["headers"])
        ):
            await self.app(scope, receive, send)
            return
        await send_json(
            scope,
            send,
            Unauthorized.http_status,
            {"detail": str(Unauthorized())},
            [(b"www-authenticate", b'Bearer realm="etastream"')],
        )


class BodyLimit:
    """Refuse a body over ``max_bytes`` with 413 before anything parses it.

    A declared ``Content-Length`` over the limit is refused without reading a byte; otherwise
    the body is read (and counted as it streams in, chunked uploads included) up to the limit,
    then handed on whole.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def _too_large(self, scope: Scope, send: Send, size: int | None) -> None:
        error = RequestTooLarge(self.max_bytes, size)
        await send_json(
            scope, send, error.http_status, {"detail": str(error)}, [(b"connection", b"close")]
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(scope, send, int(declared))
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(scope, send, None)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

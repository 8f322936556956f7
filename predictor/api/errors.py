"""The HTTP API's errors: each knows its status and builds a message safe to show a client.

EtaError (stream_features.errors)
└── ApiError                      500  the API's own failures
    ├── InvalidRequest            422  a body or parameter that breaks the contract (by field)
    ├── Unauthorized              401  no key, or the wrong one, while ETA_API_KEY is set
    ├── RequestTooLarge           413  a body over ETA_MAX_REQUEST_BYTES (before any parsing)
    ├── PredictionNotFound        404  no streamed prediction cached for the order
    ├── StoreEtaNotFound          404  no batch prediction for the store (or no batch run yet)
    ├── NotReady                  503  no model loaded yet, or Redis unreachable
    └── UnusablePrediction        500  the model returned no usable duration

Only these reach a client with their message; anything else becomes a generic 500 with a
request id, its detail logged on the server.
"""

from __future__ import annotations

from dataclasses import dataclass

from stream_features.errors import EtaError

__all__ = [
    "ApiError",
    "FieldProblem",
    "InvalidRequest",
    "NotReady",
    "PredictionNotFound",
    "RequestTooLarge",
    "StoreEtaNotFound",
    "Unauthorized",
    "UnusablePrediction",
]


class ApiError(EtaError):
    http_status = 500


@dataclass(frozen=True)
class FieldProblem:
    """One field-level reason a request was rejected: where (``loc``), what, and its kind."""

    loc: tuple[str | int, ...]
    msg: str
    type: str

    @property
    def field(self) -> str:
        """The location as a dotted path.

        >>> FieldProblem(("body", 3, "total_items"), "too small", "greater_than_equal").field
        'body.3.total_items'
        """
        return ".".join(str(part) for part in self.loc)


class InvalidRequest(ApiError):
    http_status = 422

    def __init__(self, problems: list[FieldProblem]) -> None:
        self.problems = problems
        first = problems[0] if problems else FieldProblem(("body",), "invalid", "invalid")
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"{first.field}: {first.msg}{more}")


class Unauthorized(ApiError):
    http_status = 401

    def __init__(self) -> None:
        super().__init__(
            "missing or wrong API key: send 'X-API-Key: <key>' or 'Authorization: Bearer <key>'"
        )


class RequestTooLarge(ApiError):
    http_status = 413

    def __init__(self, limit: int, size: int | None = None) -> None:
        self.limit, self.size = limit, size
        said = f"of {size} bytes " if size is not None else ""
        super().__init__(
            f"the request body {said}is over the {limit}-byte limit (ETA_MAX_REQUEST_BYTES); "
            "send fewer orders per request"
        )


class PredictionNotFound(ApiError):
    http_status = 404

    def __init__(self, order_id: str) -> None:
        self.order_id = order_id
        super().__init__(
            f"no streamed prediction for order {order_id!r}: the stream has not scored it, or "
            "the worker keeps no cache of its predictions (off by default: start `eta predict "
            "stream` with ETA_PREDICTION_TTL_S=3600 to keep each one an hour, at about a third "
            "of its throughput), or the cached one expired; POST /v1/predictions scores an "
            "order now"
        )


class StoreEtaNotFound(ApiError):
    http_status = 404

    def __init__(self, store_id: str, batch_version: str | None) -> None:
        self.store_id, self.batch_version = store_id, batch_version
        if batch_version is None:
            reason = "no batch prediction run has completed yet (run `eta predict batch`)"
        else:
            reason = f"the store is not in batch run {batch_version} (not an active store)"
        super().__init__(f"no precomputed ETA for store {store_id!r}: {reason}")


class NotReady(ApiError):
    http_status = 503

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = reasons
        super().__init__("not ready: " + "; ".join(reasons))


class UnusablePrediction(ApiError):
    def __init__(self, model: str, version: str, order_id: str, duration: float) -> None:
        self.model, self.version, self.order_id = model, version, order_id
        super().__init__(
            f"model {model} version {version} returned an unusable duration ({duration!r} s) "
            f"for order {order_id!r}; the stream would dead-letter it"
        )

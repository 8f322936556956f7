"""Request bodies to orders, read by the stream's rules: what the worker would dead-letter is a
422 here, by field, with the reason the dead letter would carry.

Each order goes through the checks ``contract.decode`` and the stream core make of one message,
called, not copied: the size limit (``check_size``), the JSON-object checks (``check_object``:
``schema_version``, no booleans), the contract's ``OrderCreated`` model, and the event-time
bound (``check_event_time``), with the limits of the stream's ``PipelineConfig``. Unlike decode,
every bad order is reported (each with its first problem before the model, all of its problems
from it), and an order may leave ``type`` out: the route takes orders only.

FastAPI's own body handling would validate ``OrderCreated | list[OrderCreated]`` as a union and
report each error twice (once per branch); parsing here picks the branch from the JSON's shape,
caps the list before validating it, and never echoes the input back (a rejected field's value
could be anything, a secret pasted by mistake included).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from predictor.api.errors import FieldProblem, InvalidRequest
from predictor.serving.pipeline import PipelineConfig, check_event_time
from stream_features.contract import OrderCreated, check_object, check_size
from stream_features.errors import RejectedMessage
from stream_features.quality import screen

__all__ = ["MAX_PROBLEMS", "parse_orders", "problems_of"]

MAX_PROBLEMS = 50
"""At most this many field problems are reported for one request (1000 bad orders would give
tens of thousands); the last entry says how many were left out."""
_MAX_LOC_PART = 64
_ORDERS: TypeAdapter[list[OrderCreated]] = TypeAdapter(list[OrderCreated])
_STREAM = PipelineConfig()
Loc = tuple[str | int, ...]
"""Where a problem is: "body", the order's index in a list, the field."""
_OBJECT_KINDS = {None: "model_type", "schema_version": "literal_error"}  # else: a boolean


def _part(value: Any) -> str | int:
    if isinstance(value, int):
        return value
    text = str(value)
    return text if len(text) <= _MAX_LOC_PART else text[:_MAX_LOC_PART] + "…"


def problems_of(
    exc: ValidationError, prefix: tuple[str | int, ...] = ("body",), drop: int = 0
) -> list[FieldProblem]:
    """A pydantic error as field problems: locations under ``prefix`` (their first ``drop``
    parts cut), inputs left out."""
    problems = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False):
        loc = tuple(_part(p) for p in err["loc"][drop:])
        problems.append(FieldProblem((*prefix, *loc), err["msg"], err["type"]))
    return _capped(problems)


def _capped(problems: list[FieldProblem]) -> list[FieldProblem]:
    if len(problems) <= MAX_PROBLEMS:
        return problems
    left = len(problems) - MAX_PROBLEMS + 1
    return [
        *problems[: MAX_PROBLEMS - 1],
        FieldProblem(("body",), f"{left} more problems not listed", "too_many_errors"),
    ]


def _rejected(at: Loc, exc: RejectedMessage, kind: str) -> FieldProblem:
    """The stream's rejection as a field problem: its field under ``at``, its reason as is."""
    loc = at if exc.field is None else (*at, _part(exc.field))
    return FieldProblem(loc, exc.reason, kind)


def _unreadable(
    item: Any, at: Loc, raw: bytes | None, stream: PipelineConfig
) -> FieldProblem | None:
    """What the stream rejects before its model reads an order; ``raw`` is the order's bytes
    when the size check applies."""
    try:
        if raw is not None:
            check_size(raw, stream.max_message_bytes)
    except RejectedMessage as exc:
        return _rejected(at, exc, "too_large")
    try:
        check_object(item)
    except RejectedMessage as exc:
        return _rejected(at, exc, _OBJECT_KINDS.get(exc.field, "bool_type"))
    return None


def _validated(
    checked: list[tuple[Loc, Any]],
) -> tuple[list[tuple[Loc, OrderCreated]], list[FieldProblem]]:
    """The contract's model over the orders: one validation of the list when all pass (the
    usual case), else each order on its own, so that every problem is named."""
    try:
        orders = _ORDERS.validate_python([data for _, data in checked])
        return [(at, order) for (at, _), order in zip(checked, orders, strict=True)], []
    except (ValidationError, ValueError, TypeError, OverflowError):
        pass
    valid: list[tuple[Loc, OrderCreated]] = []
    problems: list[FieldProblem] = []
    for at, data in checked:
        try:
            valid.append((at, OrderCreated.model_validate(data)))
        except ValidationError as exc:
            problems.extend(problems_of(exc, prefix=at))
        except (ValueError, TypeError, OverflowError) as exc:  # as decode: validators raising
            problems.append(FieldProblem(at, str(exc)[:200] or type(exc).__name__, "value_error"))
    return valid, problems


def _items(raw: bytes, max_orders: int) -> tuple[list[Any], bool]:
    """The body's JSON as a list of would-be orders, and whether it was a list."""
    if not raw.strip():
        raise InvalidRequest(
            [FieldProblem(("body",), "send an order object or a list of orders", "missing")]
        )
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        problem = FieldProblem(("body",), f"not valid JSON: {exc}", "json_invalid")
        raise InvalidRequest([problem]) from None
    if isinstance(data, dict):
        return [data], False
    if not isinstance(data, list):
        raise InvalidRequest(
            [
                FieldProblem(
                    ("body",),
                    f"expected an order object or a list of orders, got {type(data).__name__}",
                    "model_type",
                )
            ]
        )
    if not data:
        raise InvalidRequest([FieldProblem(("body",), "send at least one order", "too_short")])
    if len(data) > max_orders:
        raise InvalidRequest(
            [
                FieldProblem(
                    ("body",),
                    f"at most {max_orders} orders in one request, got {len(data)}; split the list",
                    "too_long",
                )
            ]
        )
    return data, True


def parse_orders(
    raw: bytes,
    max_orders: int = 1000,
    *,
    stream: PipelineConfig = _STREAM,
    now_ms: int | None = None,
    findings: Counter[str] | None = None,
) -> tuple[list[OrderCreated], bool]:
    """A body holding one order or a list of them, each read as the stream would read it
    under ``stream``'s limits at ``now_ms`` (default: now); ``(orders, was_a_list)``.

    The orders' data-quality findings are added to ``findings`` by rule when the body is
    accepted; under ``stream.contract_strict`` a finding is a problem, as it is a dead letter.

    >>> parse_orders(b"[]")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    predictor.api.errors.InvalidRequest: body: send at least one order
    >>> parse_orders(b'{"order_id": 1.5}')  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    predictor.api.errors.InvalidRequest: body.order_id: Input should be a valid string (and ...
    """
    items, many = _items(raw, max_orders)
    now_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    # an order's own bytes: the body for one; for a list, each order re-encoded, and only when
    # the body is over the limit (no part of a body under it can be over it)
    big = many and len(raw) > stream.max_message_bytes
    problems: list[FieldProblem] = []
    checked: list[tuple[Loc, Any]] = []
    for i, item in enumerate(items):
        at: Loc = ("body", i) if many else ("body",)
        own = raw if not many else orjson.dumps(item) if big else None
        problem = _unreadable(item, at, own, stream)
        if problem is None:
            checked.append((at, item))
        else:
            problems.append(problem)
    valid, invalid = _validated(checked)
    problems.extend(invalid)
    found: Counter[str] = Counter()
    for at, order in valid:
        try:
            check_event_time(order, now_ms=now_ms, max_future_skew_s=stream.max_future_skew_s)
        except RejectedMessage as exc:
            problems.append(_rejected(at, exc, "too_far_ahead"))
            continue
        try:  # after the time check, as the stream core does
            found.update(f.rule for f in screen(order, strict=stream.contract_strict))
        except RejectedMessage as exc:
            problems.append(_rejected(at, exc, "data_quality"))
    if problems:
        if many:  # in the list's order
            problems.sort(key=lambda p: p.loc[1])
        raise InvalidRequest(_capped(problems))
    if findings is not None:
        findings.update(found)
    return [order for _, order in valid], many

"""Request bodies to orders: one JSON parse, one validation, every problem named by field.

FastAPI's own body handling would validate ``OrderCreated | list[OrderCreated]`` as a union and
report each error twice (once per branch); parsing here picks the branch from the JSON's shape,
caps the list before validating it, and never echoes the input back (a rejected field's value
could be anything, a secret pasted by mistake included).
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from predictor.api.errors import FieldProblem, InvalidRequest
from stream_features.contract import BOOLEAN_REASON, OrderCreated, boolean_fields

__all__ = ["MAX_PROBLEMS", "parse_orders", "problems_of"]

MAX_PROBLEMS = 50
"""At most this many field problems are reported for one request (1000 bad orders would give
tens of thousands); the last entry says how many were left out."""
_MAX_LOC_PART = 64
_ORDERS: TypeAdapter[list[OrderCreated]] = TypeAdapter(list[OrderCreated])


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


def parse_orders(raw: bytes, max_orders: int = 1000) -> tuple[list[OrderCreated], bool]:
    """A body holding one order or a list of them; ``(orders, was_a_list)``.

    >>> parse_orders(b"[]")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    predictor.api.errors.InvalidRequest: body: send at least one order
    >>> parse_orders(b'{"order_id": 1}')  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    predictor.api.errors.InvalidRequest: body.order_id: Input should be a valid string (and ...
    """
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
        many, items = False, [data]
    elif isinstance(data, list):
        many, items = True, data
        if not items:
            raise InvalidRequest([FieldProblem(("body",), "send at least one order", "too_short")])
        if len(items) > max_orders:
            raise InvalidRequest(
                [
                    FieldProblem(
                        ("body",),
                        f"at most {max_orders} orders in one request, got {len(items)}; "
                        "split the list",
                        "too_long",
                    )
                ]
            )
    else:
        raise InvalidRequest(
            [
                FieldProblem(
                    ("body",),
                    f"expected an order object or a list of orders, got {type(data).__name__}",
                    "model_type",
                )
            ]
        )
    flagged = [  # as the stream's decode: pydantic alone would read true as 1
        FieldProblem(("body", *((i,) if many else ()), _part(key)), BOOLEAN_REASON, "bool_type")
        for i, item in enumerate(items)
        if isinstance(item, dict)
        for key in boolean_fields(item)
    ]
    if flagged:
        raise InvalidRequest(_capped(flagged))
    try:
        orders = _ORDERS.validate_python(items)
    except ValidationError as exc:
        # one order was validated as a list of one: its index is not part of the field path
        raise InvalidRequest(problems_of(exc, drop=0 if many else 1)) from None
    return orders, many

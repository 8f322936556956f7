"""The API reads orders with the stream's limits: event time against now, each order's size,
every bad order of a list named in the list's order; the limits come from the worker's config."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from predictor.api.errors import InvalidRequest
from predictor.api.parsing import parse_orders
from predictor.api.wiring import api_config
from predictor.engines.options import pipeline_config
from predictor.serving.pipeline import PipelineConfig
from stream_features.settings import Settings
from tests.api_fakes import order_json

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)


def _at(delta: timedelta) -> str:
    return (NOW + delta).isoformat().replace("+00:00", "Z")


def test_the_future_bound_is_the_configured_skew_from_now() -> None:
    rules = PipelineConfig(max_future_skew_s=60)
    inside = orjson.dumps(order_json(created_at=_at(timedelta(seconds=60))))
    beyond = orjson.dumps(order_json(created_at=_at(timedelta(seconds=61))))

    (order,), many = parse_orders(inside, stream=rules, now_ms=NOW_MS)
    with pytest.raises(InvalidRequest) as rejected:
        parse_orders(beyond, stream=rules, now_ms=NOW_MS)

    assert order.created_at == NOW + timedelta(seconds=60) and not many
    (problem,) = rejected.value.problems
    assert (problem.field, problem.type) == ("body.created_at", "too_far_ahead")
    assert (
        problem.msg == "stamped 61 s in the future, more than the 60 s allowed (max_future_skew_s)"
    )


def test_every_bad_order_of_a_list_is_named_in_the_lists_order() -> None:
    orders: list[Any] = [order_json(f"o{i}") for i in range(6)]
    orders[4]["total_items"] = True  # rejected before the model
    orders[1]["created_at"] = _at(timedelta(days=3 * 365))  # rejected after it
    orders[3]["subtotal"] = -1  # by the model
    orders[5] = [1, 2]  # not an object

    with pytest.raises(InvalidRequest) as rejected:
        parse_orders(orjson.dumps(orders), now_ms=NOW_MS)

    assert [(p.field, p.type) for p in rejected.value.problems] == [
        ("body.1.created_at", "too_far_ahead"),
        ("body.3.subtotal", "greater_than_equal"),
        ("body.4.total_items", "bool_type"),
        ("body.5", "model_type"),
    ]
    assert rejected.value.problems[3].msg == "expected a JSON object, got list"


def test_each_order_of_a_list_is_held_to_the_message_size() -> None:
    rules = PipelineConfig(max_message_bytes=2048)
    small = [order_json(f"o{i}") for i in range(10)]  # the body is over 2048, no order is
    padded = [*small, {**order_json("big"), "store_category": "x" * 3000}]

    orders, many = parse_orders(orjson.dumps(small), stream=rules, now_ms=NOW_MS)
    with pytest.raises(InvalidRequest) as rejected:
        parse_orders(orjson.dumps(padded), stream=rules, now_ms=NOW_MS)

    assert len(orders) == 10 and many
    (problem,) = rejected.value.problems
    assert (problem.field, problem.type) == ("body.10", "too_large")
    assert problem.msg.endswith("bytes is over the 2048-byte limit")


def test_the_api_takes_its_limits_from_the_workers_config() -> None:
    settings = Settings(max_future_skew_s=120, max_message_bytes=4096)

    config = api_config(settings)

    assert config.stream == pipeline_config(settings)
    assert (config.stream.max_future_skew_s, config.stream.max_message_bytes) == (120, 4096)

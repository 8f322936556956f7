"""The HTTP API accepts and rejects an order exactly as the stream worker does.

Each order goes two ways, under one config (``pipeline_config`` of the test's settings, the
worker's own builder): through the stream core (``process_batch``: a dead letter, or a
prediction) and through ``POST /v1/predictions`` on the real Redis. A dead-lettered order is a
422 naming the dead letter's field, with its reason word for word; an order the stream scores
gets the same prediction online (``mode`` and ``served_at`` aside).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pytest
import redis

from predictor.api import ApiConfig, create_app
from predictor.api.schemas import ValidationErrorBody
from predictor.engines.options import pipeline_config
from predictor.serving.dlq import decode_dead_letter
from predictor.serving.pipeline import BatchResult, PipelineConfig, process_batch
from predictor.serving.records import RawRecord
from stream_features.quality import OPTIONAL_ORDER_FIELDS
from stream_features.redis_windows import RedisFeatureSource
from stream_features.settings import Settings
from tests.api_fakes import AppClient, Models, async_twin
from tests.conftest import REDIS_KINDS
from tests.integration.api_helpers import seed_state

pytestmark = [
    pytest.mark.integration,
    pytest.mark.parametrize("redis_client", REDIS_KINDS, indirect=True),
]

YEAR = timedelta(days=365)


class FeatureSum:
    """A model whose answer moves with every feature: equal answers mean equal inputs."""

    name, version = "feature-sum", "1"

    def predict(self, values: npt.NDArray[np.float64], /) -> npt.NDArray[np.float64]:
        sums: npt.NDArray[np.float64] = np.nan_to_num(values).sum(axis=1)
        return 600.0 + sums % 3000.0


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def good_order(now: datetime, order_id: str = "parity-1", **changes: Any) -> dict[str, Any]:
    """An order the contract accepts, at store s1 (which ``seed_state`` gave a history)."""
    return {
        "type": "OrderCreated",
        "order_id": order_id,
        "created_at": _iso(now),
        "market_id": "m1",
        "store_id": "s1",
        "store_category": "pizza",
        "order_protocol": 1,
        "total_items": 3,
        "subtotal": 2500,
        "num_distinct_items": 2,
        "min_item_price": 500,
        "max_item_price": 1200,
        "estimated_order_place_duration_s": 300,
        "estimated_store_to_consumer_driving_duration_s": 600,
        **changes,
    }


def _without(order: dict[str, Any], field: str) -> dict[str, Any]:
    return {k: v for k, v in order.items() if k != field}


# name -> (what to do to a good order at `now`, the field the stream names, or None)
Change = Callable[[dict[str, Any], datetime], dict[str, Any]]
BAD: dict[str, tuple[Change, str | None]] = {
    "boolean-for-a-number": (lambda o, now: {**o, "total_items": True}, "total_items"),
    "boolean-for-a-coordinate": (lambda o, now: {**o, "store_lat": False}, "store_lat"),
    "created-3-years-ahead": (
        lambda o, now: {**o, "created_at": _iso(now + 3 * YEAR)},
        "created_at",
    ),
    "created-30-years-back": (
        lambda o, now: {**o, "created_at": _iso(now - 30 * YEAR)},
        "created_at",
    ),
    "created-2-hours-ahead": (
        lambda o, now: {**o, "created_at": _iso(now + timedelta(hours=2))},
        "created_at",
    ),
    "no-time-zone": (lambda o, now: {**o, "created_at": "2026-03-01T12:00:00"}, "created_at"),
    "negative-items": (lambda o, now: {**o, "total_items": -1}, "total_items"),
    "negative-subtotal": (lambda o, now: {**o, "subtotal": -5}, "subtotal"),
    "fractional-cents": (lambda o, now: {**o, "subtotal": 2500.5}, "subtotal"),
    "not-a-number": (lambda o, now: {**o, "subtotal": "lots"}, "subtotal"),
    "float-for-an-id": (lambda o, now: {**o, "store_id": 42.0}, "store_id"),
    "too-long-id": (lambda o, now: {**o, "store_id": "x" * 65}, "store_id"),
    "missing-field": (lambda o, now: _without(o, "subtotal"), "subtotal"),
    "missing-id": (lambda o, now: _without(o, "order_id"), "order_id"),
    "null-id": (lambda o, now: {**o, "market_id": None}, "market_id"),
    "negative-price": (lambda o, now: {**o, "min_item_price": -1}, "min_item_price"),
    "unknown-field": (lambda o, now: {**o, "tip": 300}, "tip"),
    "schema-version-2": (lambda o, now: {**o, "schema_version": 2}, "schema_version"),
    "long-string": (lambda o, now: {**o, "store_category": "x" * 100_000}, "store_category"),
    "over-the-message-limit": (lambda o, now: {**o, "store_category": "x" * 1_100_000}, None),
}


@pytest.fixture()
def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@pytest.fixture()
def stream_config(settings: Settings) -> PipelineConfig:
    return pipeline_config(settings)


@pytest.fixture()
def api(
    redis_client: redis.Redis, key_prefix: str, stream_config: PipelineConfig
) -> Iterator[AppClient]:
    app = create_app(
        ApiConfig(key_prefix=key_prefix, stream=stream_config),
        redis_client,
        Models(FeatureSum()),
        async_client=async_twin(redis_client),
    )
    with AppClient(app) as client:
        yield client


def through_stream(
    raw: bytes,
    redis_client: redis.Redis,
    key_prefix: str,
    config: PipelineConfig,
    topic: str,
) -> BatchResult:
    """One record through the stream worker's core, on the real feature state."""
    record = RawRecord(raw, topic=topic, partition=0, offset=0, key=b"s1")
    source = RedisFeatureSource(redis_client, key_prefix=key_prefix)
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    return process_batch([record], source, FeatureSum(), now_ms=now_ms, config=config)


def _same_clock(reason: str) -> str:
    """A reason with the seconds-ahead figure blanked: the two sides read the clock apart."""
    return re.sub(r"stamped -?\d+ s", "stamped N s", reason)


@pytest.mark.parametrize("case", sorted(BAD))
def test_an_order_the_stream_dead_letters_is_a_422_with_its_field_and_reason(
    case: str,
    now: datetime,
    api: AppClient,
    redis_client: redis.Redis,
    key_prefix: str,
    settings: Settings,
    stream_config: PipelineConfig,
) -> None:
    change, field = BAD[case]
    raw = orjson.dumps(change(good_order(now), now))

    streamed = through_stream(raw, redis_client, key_prefix, stream_config, settings.orders_topic)
    response = api.post("/v1/predictions", content=raw)

    assert streamed.predictions == []
    (letter,) = [decode_dead_letter(record.value) for record in streamed.dead_letters]
    assert letter.field == field
    assert response.status_code == 422, response.text
    problems = ValidationErrorBody.model_validate(response.json()).detail
    assert len(problems) == 1, problems
    assert problems[0].field == ("body" if field is None else f"body.{field}")
    assert _same_clock(problems[0].msg) == _same_clock(letter.reason)
    if case == "created-3-years-ahead":
        assert "more than the 3600 s allowed (max_future_skew_s)" in letter.reason


def test_a_bad_order_in_a_list_is_named_by_index_with_the_stream_reason(
    now: datetime,
    api: AppClient,
    redis_client: redis.Redis,
    key_prefix: str,
    settings: Settings,
    stream_config: PipelineConfig,
) -> None:
    orders = [good_order(now, f"list-{i}") for i in range(4)]
    orders[2]["created_at"] = _iso(now + 3 * YEAR)
    raw = orjson.dumps(orders[2])

    streamed = through_stream(raw, redis_client, key_prefix, stream_config, settings.orders_topic)
    response = api.post("/v1/predictions", json=orders)

    (letter,) = [decode_dead_letter(record.value) for record in streamed.dead_letters]
    assert response.status_code == 422, response.text
    (problem,) = response.json()["detail"]
    assert problem["field"] == "body.2.created_at"
    assert _same_clock(problem["msg"]) == _same_clock(letter.reason)


# name -> what to change in a good order at `now`; both paths accept it
GOOD: dict[str, Callable[[datetime], dict[str, Any]]] = {
    "plain": lambda now: {},
    # the contract reads JSON leniently where the value is unambiguous, on both paths alike
    "numeric-string": lambda now: {"subtotal": "2500"},
    "whole-float": lambda now: {"total_items": 3.0},
    "epoch-seconds": lambda now: {"created_at": int(now.timestamp())},
    # within max_future_skew_s (3600 s), with room for the two clock readings
    "an-hour-ahead": lambda now: {"created_at": _iso(now + timedelta(seconds=3500))},
    # ids as JSON integers, as real exports number them: read as the decimal string
    "numeric-ids": lambda now: {"order_id": 90017, "store_id": 7000, "market_id": 1},
    # optional attributes left out or null: NaN to the model, and a data-quality finding
    "no-category": lambda now: {"store_category": None},
    "null-estimates": lambda now: {
        "estimated_order_place_duration_s": None,
        "estimated_store_to_consumer_driving_duration_s": None,
    },
    "no-optional-attribute": lambda now: dict.fromkeys(OPTIONAL_ORDER_FIELDS),
    "no-category-numeric-ids": lambda now: {
        "store_category": None,
        "order_id": 90018,
        "store_id": 7000,
        "market_id": 1,
    },
    # implausible but usable: kept and counted, not dead-lettered
    "min-over-max-price": lambda now: {"min_item_price": 5000},
    "zero-driving-estimate": lambda now: {"estimated_store_to_consumer_driving_duration_s": 0},
}
_DROPPED = {"no-category", "no-optional-attribute", "no-category-numeric-ids"}
"""Cases whose null attributes are left out of the JSON rather than sent as null."""


@pytest.mark.parametrize("case", sorted(GOOD))
def test_an_order_the_stream_scores_gets_the_same_prediction_online(
    case: str,
    now: datetime,
    api: AppClient,
    redis_client: redis.Redis,
    key_prefix: str,
    settings: Settings,
    stream_config: PipelineConfig,
) -> None:
    seed_state(redis_client, key_prefix, now - timedelta(minutes=1))
    order = {**good_order(now, f"good-{case}"), **GOOD[case](now)}
    if case in _DROPPED:
        order = {k: v for k, v in order.items() if v is not None}
    raw = orjson.dumps(order)

    response = api.post("/v1/predictions", content=raw)  # first: the API applies nothing
    streamed = through_stream(raw, redis_client, key_prefix, stream_config, settings.orders_topic)

    assert streamed.dead_letters == []
    assert response.status_code == 200, response.text
    (record,) = streamed.predictions
    online, stream = orjson.loads(response.content), orjson.loads(record.value)
    assert (online["mode"], stream["mode"]) == ("online", "streaming")
    ignored = {"mode", "served_at"}
    assert {k: v for k, v in online.items() if k not in ignored} == {
        k: v for k, v in stream.items() if k not in ignored
    }
    assert stream["order_id"] == str(order["order_id"])  # an integer id: its decimal string
    assert stream["store_id"] == str(order["store_id"])


# name -> a change to a good order that makes a data-quality finding, and its field
FINDINGS: dict[str, tuple[dict[str, Any], str]] = {
    "min-over-max-price": ({"min_item_price": 5000}, "min_item_price"),
    "item-above-subtotal": ({"max_item_price": 9000}, "max_item_price"),
    "distinct-over-total": ({"num_distinct_items": 9}, "num_distinct_items"),
    "zero-estimate": ({"estimated_order_place_duration_s": 0}, "estimated_order_place_duration_s"),
    "null-category": ({"store_category": None}, "store_category"),
}


@pytest.mark.parametrize("case", sorted(FINDINGS))
def test_under_strict_a_finding_is_a_dead_letter_and_a_422_alike(
    case: str,
    now: datetime,
    redis_client: redis.Redis,
    key_prefix: str,
    settings: Settings,
) -> None:
    strict = pipeline_config(settings.model_copy(update={"contract_strict": True}))
    change, field = FINDINGS[case]
    raw = orjson.dumps(good_order(now, f"strict-{case}", **change))
    app = create_app(
        ApiConfig(key_prefix=key_prefix, stream=strict),
        redis_client,
        Models(FeatureSum()),
        async_client=async_twin(redis_client),
    )
    with AppClient(app) as api:
        response = api.post("/v1/predictions", content=raw)
    streamed = through_stream(raw, redis_client, key_prefix, strict, settings.orders_topic)
    lenient = through_stream(
        raw, redis_client, key_prefix, pipeline_config(settings), settings.orders_topic
    )

    assert streamed.predictions == [] and lenient.dead_letters == []
    assert sum(lenient.findings_by_rule.values()) >= 1
    (letter,) = [decode_dead_letter(record.value) for record in streamed.dead_letters]
    assert letter.field == field
    assert "rejected: ETA_CONTRACT_STRICT is set" in letter.reason
    assert response.status_code == 422, response.text
    (problem,) = ValidationErrorBody.model_validate(response.json()).detail
    assert (problem.field, problem.msg) == (f"body.{field}", letter.reason)

"""The HTTP API reads orders by the same rules as the stream: what ``contract.decode`` accepts
as an ``OrderCreated`` the API accepts as the same order, and what it rejects the API rejects
with a field. (The API's auth, 413 and CORS are tested with the API itself.)"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from predictor.api.errors import InvalidRequest
from predictor.api.parsing import parse_orders
from stream_features.contract import OrderCreated, decode
from stream_features.errors import RejectedMessage
from tests.fuzz.samples import NASTY, VALID

ORDER = VALID["orders"][0]


def api(raw: bytes) -> OrderCreated | InvalidRequest:
    try:
        (order,), _ = parse_orders(raw)
    except InvalidRequest as exc:
        assert exc.problems and all(p.field and p.msg for p in exc.problems)
        return exc
    return order


def stream(raw: bytes) -> OrderCreated | RejectedMessage:
    try:
        event = decode(raw)
    except RejectedMessage as exc:
        return exc
    assert isinstance(event, OrderCreated)
    return event


@pytest.mark.parametrize("field", ["total_items", "store_lat", "schema_version"])
def test_a_boolean_is_no_number_for_the_api_either(field: str) -> None:
    one = orjson.dumps({**ORDER, field: True})
    many = orjson.dumps([ORDER, {**ORDER, field: False}])

    with pytest.raises(InvalidRequest) as single:
        parse_orders(one)
    with pytest.raises(InvalidRequest) as listed:
        parse_orders(many)
    assert [p.field for p in single.value.problems] == [f"body.{field}"]
    assert [p.field for p in listed.value.problems] == [f"body.1.{field}"]
    by_stream = stream(one)  # the dead letter's reason, word for word
    assert isinstance(by_stream, RejectedMessage)
    assert single.value.problems[0].msg == by_stream.reason


@pytest.mark.parametrize("name", ["year-9999", "no-zone", "u64-int", "unknown-field", "nan"])
def test_nasty_orders_are_422s_with_a_field_not_500s(name: str) -> None:
    raw = NASTY[name]
    data = orjson.loads(raw) if name != "nan" else None
    if isinstance(data, dict):
        raw = orjson.dumps({**ORDER, **{k: v for k, v in data.items() if k != "type"}})
    assert isinstance(api(raw), InvalidRequest)


_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
    | st.sampled_from(["2026-03-01T12:00:00Z", "2026-03-01T12:00:00", "1", "9" * 30]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)


@settings(
    max_examples=300, deadline=timedelta(seconds=5), suppress_health_check=[HealthCheck.too_slow]
)
@given(
    field=st.sampled_from(sorted({*ORDER, "extra"})),
    value=_values,
    drop=st.booleans(),
)
def test_the_api_and_the_stream_agree_on_every_changed_order(
    field: str, value: Any, drop: bool
) -> None:
    data = {k: v for k, v in ORDER.items() if not (drop and k == field)}
    if not drop:
        data[field] = value
    if field == "schema_version" and not drop and value == 1 and type(value) is float:
        return  # 1.0: the API's Literal[1] reads it as 1, decode wants the integer
    if field == "type" and drop:
        return  # the API's route takes orders only, so an order may leave its type out
    raw = json.dumps(data).encode()

    by_api, by_stream = api(raw), stream(raw)

    if isinstance(by_stream, RejectedMessage):
        assert isinstance(by_api, InvalidRequest), (by_stream, by_api)
    else:
        assert by_api == by_stream

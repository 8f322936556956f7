from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from stream_features.contract import (
    OrderCreated,
    OrderDelivered,
    decode,
    encode,
    event_id,
    json_schemas,
)
from stream_features.errors import RejectedMessage


def order(**over: object) -> dict[str, object]:
    base: dict[str, object] = dict(
        type="OrderCreated",
        order_id="o1",
        created_at="2026-03-01T12:00:00+00:00",
        market_id="m1",
        store_id="s1",
        store_category="pizza",
        order_protocol=1,
        total_items=3,
        subtotal=2500,
        num_distinct_items=2,
        min_item_price=500,
        max_item_price=1500,
        estimated_order_place_duration_s=300,
        estimated_store_to_consumer_driving_duration_s=600,
    )
    base.update(over)
    return base


def test_round_trip_keeps_every_field() -> None:
    original = OrderCreated.model_validate(order(store_lat=37.7, store_lon=-122.4))
    assert decode(encode(original)) == original


def test_timestamps_are_normalised_to_utc() -> None:
    event = OrderCreated.model_validate(order(created_at="2026-03-01T14:00:00+02:00"))
    assert event.created_at == datetime(2026, 3, 1, 12, tzinfo=UTC)
    assert event.created_at.utcoffset() == timedelta(0)
    assert event.created_at.tzinfo is UTC or event.created_at.tzinfo == UTC


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"subtotal": -1}, "subtotal"),
        ({"total_items": 0}, "total_items"),
        ({"estimated_order_place_duration_s": -5}, "estimated_order_place_duration_s"),
        ({"min_item_price": 2000, "max_item_price": 100}, None),
        ({"created_at": "2026-03-01T12:00:00"}, "created_at"),
        ({"created_at": "1970-01-01T00:00:00Z"}, "created_at"),
        ({"surprise": 1}, "surprise"),
        ({"schema_version": 2}, "schema_version"),
        ({"store_lat": float("nan")}, None),  # NaN is not JSON: rejected at parse
    ],
)
def test_invalid_orders_are_rejected_with_the_field(
    change: dict[str, object], field: str | None
) -> None:
    import orjson

    with pytest.raises(RejectedMessage) as info:
        decode(
            orjson.dumps(order(**change), option=orjson.OPT_SERIALIZE_NUMPY)
            if "store_lat" not in change
            else orjson.dumps(order()).replace(b"}", b',"store_lat":NaN}')
        )
    assert info.value.reason
    if field is not None:
        assert info.value.field == field


@pytest.mark.parametrize("raw", [b"", b"\xff\xfe", b"[]", b"null", b"{", b'"x"', b"1e999"])
def test_garbage_is_rejected_not_raised(raw: bytes) -> None:
    with pytest.raises(RejectedMessage):
        decode(raw)


def test_oversized_message_rejected_before_parsing() -> None:
    with pytest.raises(RejectedMessage, match="over the 1024-byte limit"):
        decode(b"{" + b" " * 2000 + b"}", max_bytes=1024)


def test_event_ids_are_stable() -> None:
    d = OrderDelivered(
        order_id="o1", store_id="s1", market_id="m1", delivered_at=datetime(2026, 3, 1, tzinfo=UTC)
    )
    assert event_id(d) == event_id(decode(encode(d))) == "OrderDelivered:o1"


def test_every_message_has_a_schema() -> None:
    schemas = json_schemas()
    assert set(schemas) == {
        "OrderCreated",
        "DasherEvent",
        "MarketSupplySnapshot",
        "OrderDelivered",
        "DeliveryPrediction",
        "DeadLetter",
    }
    assert "created_at" in schemas["OrderCreated"]["required"]

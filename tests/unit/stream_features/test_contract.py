from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
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
from stream_features.quality import FINDING_RULES, OPTIONAL_ORDER_FIELDS, findings, screen
from tests.paths import ROOT


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
        ({"min_item_price": -1}, "min_item_price"),
        ({"store_id": 4.0}, "store_id"),
        ({"store_id": ""}, "store_id"),
        ({"order_id": None}, "order_id"),
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
        "ShadowPrediction",
        "DeadLetter",
    }
    assert "created_at" in schemas["OrderCreated"]["required"]


def test_the_schema_requires_only_what_a_prediction_cannot_do_without() -> None:
    order_schema = json_schemas()["OrderCreated"]
    assert order_schema["required"] == [
        "order_id",
        "created_at",
        "market_id",
        "store_id",
        "total_items",
        "subtotal",
        "num_distinct_items",
    ]
    for name in OPTIONAL_ORDER_FIELDS:
        options = order_schema["properties"][name]["anyOf"]
        assert {"type": "null"} in options, name


def test_the_schema_says_an_id_may_be_an_integer() -> None:
    schemas = json_schemas()
    for message, field in [("OrderCreated", "store_id"), ("DasherEvent", "dasher_id")]:
        types = [o["type"] for o in schemas[message]["properties"][field]["anyOf"]]
        assert types == ["string", "integer"]
    # what etastream writes is a string
    assert schemas["DeliveryPrediction"]["properties"]["store_id"]["type"] == "string"


@pytest.mark.parametrize("missing", OPTIONAL_ORDER_FIELDS)
@pytest.mark.parametrize("how", ["absent", "null"])
def test_an_optional_attribute_may_be_missing_or_null(missing: str, how: str) -> None:
    data = order(**{missing: None})
    if how == "absent":
        del data[missing]
    event = decode(orjson.dumps(data))
    assert getattr(event, missing) is None
    assert [(f.rule, f.field) for f in findings(event)] == [("missing_attribute", missing)]


def test_integer_ids_are_read_as_their_decimal_string() -> None:
    event = decode(orjson.dumps(order(order_id=7, market_id=1, store_id=-3)))
    assert (event.order_id, event.market_id, event.store_id) == ("7", "1", "-3")
    assert event == decode(orjson.dumps(order(order_id="7", market_id="1", store_id="-3")))
    assert decode(encode(event)) == event


def test_findings_keep_the_event_and_name_rule_and_field() -> None:
    event = decode(
        orjson.dumps(
            order(
                min_item_price=2000,
                max_item_price=3000,
                subtotal=2500,
                num_distinct_items=4,
                estimated_store_to_consumer_driving_duration_s=0,
            )
        )
    )
    assert [(f.rule, f.field) for f in findings(event)] == [
        ("distinct_above_total", "num_distinct_items"),
        ("item_price_above_subtotal", "max_item_price"),
        ("zero_estimate", "estimated_store_to_consumer_driving_duration_s"),
    ]
    assert screen(event, strict=False) == findings(event)
    with pytest.raises(RejectedMessage) as info:
        screen(event, strict=True)
    assert info.value.field == "num_distinct_items"
    assert info.value.reason == (
        "num_distinct_items must be <= total_items "
        "(finding distinct_above_total, rejected: ETA_CONTRACT_STRICT is set)"
    )


def test_every_rule_has_a_distinct_name_and_a_known_event_type() -> None:
    names = [rule.name for rule in FINDING_RULES]
    assert len(set(names)) == len(names)
    assert {rule.event_type for rule in FINDING_RULES} <= set(json_schemas())


def test_the_schema_docs_list_every_finding_rule_and_optional_attribute() -> None:
    docs = (ROOT / "docs" / "contract.md").read_text()
    for rule in FINDING_RULES:
        row = next(
            (line for line in docs.splitlines() if line.startswith(f"| `{rule.name}` |")), ""
        )
        assert f"| {rule.event_type} |" in row and f"`{rule.reason}`" in row, rule.name
    for name in OPTIONAL_ORDER_FIELDS:
        assert f"`{name}`" in docs, name

"""Store profiles and slot orders: which stores a batch run scores, and for what order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from predictor.batch_scoring import (
    batch_order_id,
    orders_frame,
    profile_order,
    slot_orders,
    store_profiles,
)
from predictor.batch_scoring.profiles import PROFILE_SCHEMA
from stream_features.contract import OrderCreated

AS_OF = datetime(2026, 3, 2, 12, 30, tzinfo=UTC)


def _order(i: int, store: str, at: datetime, **changes: object) -> OrderCreated:
    fields: dict[str, object] = {
        "order_id": f"o{i}",
        "created_at": at,
        "market_id": "m1",
        "store_id": store,
        "store_category": "pizza",
        "order_protocol": 1,
        "total_items": 2,
        "subtotal": 2000,
        "num_distinct_items": 1,
        "min_item_price": 500,
        "max_item_price": 1500,
        "estimated_order_place_duration_s": 300,
        "estimated_store_to_consumer_driving_duration_s": 600,
    }
    fields.update(changes)
    return OrderCreated.model_validate(fields)


def test_a_profile_is_the_stores_median_order_over_the_window() -> None:
    day = timedelta(days=1)
    orders = [
        _order(1, "s1", AS_OF - 3 * day, total_items=1, subtotal=1000, order_protocol=2),
        _order(2, "s1", AS_OF - 2 * day, total_items=3, subtotal=3000, order_protocol=2),
        _order(3, "s1", AS_OF - 1 * day, total_items=8, subtotal=9000, order_protocol=1),
        _order(4, "s1", AS_OF - 60 * day, total_items=99, subtotal=99999),  # too old
        _order(5, "s1", AS_OF, total_items=99, subtotal=99999),  # not before as_of
        _order(6, "s2", AS_OF - 2 * day, market_id="m9", store_category="thai"),
        _order(7, "s2", AS_OF - 1 * day, market_id="m8", store_category="sushi"),
        _order(8, "s3", AS_OF - 40 * day),  # inactive: nothing in the window
    ]

    profiles = store_profiles(orders_frame(orders), AS_OF, days=28)

    assert profiles.schema == PROFILE_SCHEMA
    assert profiles["store_id"].to_list() == ["s1", "s2"]
    s1, s2 = profiles.to_dicts()
    assert (s1["total_items"], s1["subtotal"], s1["orders"]) == (3, 3000, 3)
    assert s1["order_protocol"] == 2  # the most common
    assert (s2["market_id"], s2["store_category"]) == ("m8", "sushi")  # the latest seen


def test_the_protocol_tie_goes_to_the_smaller_and_medians_keep_the_contract() -> None:
    orders = [
        _order(1, "s1", AS_OF - timedelta(hours=3), order_protocol=4, num_distinct_items=1),
        _order(2, "s1", AS_OF - timedelta(hours=2), order_protocol=3, total_items=5),
        _order(
            3,
            "s1",
            AS_OF - timedelta(hours=1),
            total_items=6,
            num_distinct_items=6,
            min_item_price=900,
            max_item_price=900,
        ),
        _order(4, "s1", AS_OF - timedelta(minutes=30), order_protocol=4, total_items=1),
        _order(5, "s1", AS_OF - timedelta(minutes=20), order_protocol=3, total_items=1),
    ]

    (profile,) = store_profiles(orders_frame(orders), AS_OF).to_dicts()
    synthetic = profile_order(profile, "batch:s1:0", AS_OF)  # validated like any order

    assert profile["order_protocol"] == 3
    assert synthetic.num_distinct_items <= synthetic.total_items
    assert synthetic.min_item_price <= synthetic.max_item_price


def test_no_orders_no_profiles() -> None:
    profiles = store_profiles(orders_frame([]), AS_OF)

    assert profiles.height == 0 and profiles.schema == PROFILE_SCHEMA


def test_slot_orders_are_store_major_and_an_hour_apart() -> None:
    templates = [_order(1, "s1", AS_OF), _order(2, "s2", AS_OF, market_id="m2")]

    orders = slot_orders(templates, 3)

    assert [(o.store_id, o.order_id) for o in orders] == [
        ("s1", "batch:s1:0"),
        ("s1", "batch:s1:1"),
        ("s1", "batch:s1:2"),
        ("s2", "batch:s2:0"),
        ("s2", "batch:s2:1"),
        ("s2", "batch:s2:2"),
    ]
    assert [o.created_at for o in orders[:3]] == [AS_OF + timedelta(hours=k) for k in range(3)]
    assert all(o.subtotal == 2000 and o.market_id == "m2" for o in orders[3:])


def test_long_store_ids_still_give_valid_order_ids() -> None:
    store = "s" * 64
    order = _order(1, store, AS_OF)

    (first,) = slot_orders([order], 1)

    assert first.order_id == batch_order_id(store, 0)
    assert len(first.order_id) <= 64
    assert batch_order_id(store, 0) != batch_order_id("t" * 64, 0)

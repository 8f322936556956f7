"""An order missing its optional attributes is scored, never rejected: each missing one reaches
the model as NaN, on the stream's Structs and the API's models alike, and the batch features
keyed by a missing store category take their default."""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np

from predictor.batch_scoring.profiles import orders_frame, profile_order, store_profiles
from stream_features.batch import compute_batch_tables, deliveries_frame, tables_as_dict
from stream_features.contract import OrderCreated, to_ms
from stream_features.definitions import BATCH_FEATURES, ORDER_FEATURES, feature_names
from stream_features.layout import order_matrix
from stream_features.point_in_time import build_training_set
from stream_features.quality import OPTIONAL_ORDER_FIELDS
from stream_features.replay_state import ReplayState
from stream_features.wire_decode import to_wire
from tests.feature_events import T0, delivered, order

_BY_FIELD = {f.field: f.name for f in ORDER_FEATURES}
_CATEGORY_MEAN = "category__delivery_duration_mean__28d"


def bare(order_id: str, minutes: float = 0, store: str = "s1") -> OrderCreated:
    """An order with every optional attribute left out."""
    full = order(order_id, T0 + timedelta(minutes=minutes), store=store)
    return OrderCreated.model_validate(
        {k: v for k, v in full.__dict__.items() if k not in OPTIONAL_ORDER_FIELDS}
    )


def test_a_missing_attribute_is_nan_in_the_model_input() -> None:
    orders = [bare("o1"), order("o2", T0)]
    created = np.array([to_ms(o.created_at) for o in orders], dtype=np.int64)
    got = order_matrix(orders, created)
    names = [f.name for f in ORDER_FEATURES]
    for field in OPTIONAL_ORDER_FIELDS:
        j = names.index(_BY_FIELD[field])
        assert math.isnan(got[0, j]), field
        assert not math.isnan(got[1, j]), field
    required = [names.index(_BY_FIELD["total_items"]), names.index("order__hour_of_day")]
    assert not np.isnan(got[0, required]).any()
    structs = order_matrix([to_wire(o) for o in orders], created)
    np.testing.assert_array_equal(structs, got)


def test_a_missing_category_has_no_batch_group_and_takes_the_default() -> None:
    history = [order(f"h{i}", T0 + timedelta(minutes=i)) for i in range(5)] + [
        bare(f"n{i}", minutes=i) for i in range(5)
    ]
    done = [delivered(o, o.created_at + timedelta(minutes=30)) for o in history]
    tables = compute_batch_tables(deliveries_frame(history, done), T0 + timedelta(days=1))
    assert tables[_CATEGORY_MEAN]["key"].to_list() == ["pizza"]
    assert all(None not in t["key"].to_list() for t in tables.values())

    state = ReplayState()
    state.use_batch(tables_as_dict(tables))
    later = T0 + timedelta(days=1, minutes=5)
    without, new_store = bare("x", minutes=24 * 60 + 5), bare("y", 24 * 60 + 6, store="s9")
    rows = state.update_and_read([without, new_store, order("z", later)])
    at = {name: j for j, name in enumerate(rows.names)}
    default = next(f.default for f in BATCH_FEATURES if f.name == _CATEGORY_MEAN)
    assert rows.values[0, at[_CATEGORY_MEAN]] == default  # no category: the default
    assert rows.values[0, at["store__delivery_duration_mean__28d"]] == 1800.0  # the store's own
    assert rows.values[1, at["store__delivery_duration_mean__28d"]] == default  # new store
    assert rows.values[2, at[_CATEGORY_MEAN]] == 1800.0
    batch = [at[f.name] for f in BATCH_FEATURES]
    again = state.read([without, new_store])  # the online read: the same lookups
    np.testing.assert_array_equal(again.values[:, batch], rows.values[:2, batch])


def test_a_training_set_keeps_orders_without_attributes() -> None:
    orders = [bare(f"n{i}", minutes=i) for i in range(3)] + [order("full", T0)]
    events = [*orders, *(delivered(o, o.created_at + timedelta(minutes=25)) for o in orders)]
    events.sort(key=lambda e: e.created_at if e.type == "OrderCreated" else e.delivered_at)
    frame = build_training_set(events)
    assert frame.height == 4
    assert frame["store_category"].null_count() == 3
    assert set(feature_names()) <= set(frame.columns)


def test_a_store_whose_orders_lack_attributes_still_gets_a_batch_profile() -> None:
    orders = [bare(f"n{i}", minutes=i) for i in range(3)]
    profiles = store_profiles(orders_frame(orders), T0 + timedelta(hours=1))
    (profile,) = profiles.to_dicts()
    assert profile["store_category"] is None and profile["min_item_price"] is None
    made = profile_order(profile, "batch-n", T0 + timedelta(hours=1))
    assert made.store_category is None and made.total_items == 3

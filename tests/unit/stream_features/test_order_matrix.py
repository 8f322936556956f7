"""The orders' own features, computed a column at a time, against each feature's definition."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from stream_features.contract import OrderCreated, to_ms
from stream_features.definitions import ORDER_FEATURES, category_code
from stream_features.layout import order_matrix
from stream_features.wire_decode import to_wire
from tests.feature_events import messy_stream, order


def _by_definition(o: OrderCreated) -> list[float]:
    """One order's row written out feature by feature, as the definitions say."""
    at = o.created_at.astimezone(UTC)
    row = []
    for f in ORDER_FEATURES:
        if f.name == "order__hour_of_day":
            row.append(float(at.hour))
        elif f.name == "order__day_of_week":
            row.append(float(at.weekday()))
        elif f.name == "order__store_category":
            row.append(float(category_code(o.store_category)))
        else:
            row.append(float(getattr(o, f.field)))
    return row


def test_every_column_is_its_feature() -> None:
    orders = [e for e in messy_stream(n=3000) if isinstance(e, OrderCreated)]
    orders += [
        order("late-sunday", datetime(2026, 3, 1, 23, 59, 59, tzinfo=UTC), category="thai"),
        order("monday", datetime(2026, 3, 2, 0, 0, tzinfo=UTC) + timedelta(microseconds=1)),
    ]
    created = np.array([to_ms(o.created_at) for o in orders], dtype=np.int64)
    got = order_matrix(orders, created)
    assert got.shape == (len(orders), len(ORDER_FEATURES))
    np.testing.assert_array_equal(got, np.array([_by_definition(o) for o in orders]))
    assert len({o.store_category for o in orders}) > 1


def test_no_orders_no_rows() -> None:
    assert order_matrix([], np.empty(0, dtype=np.int64)).shape == (0, len(ORDER_FEATURES))


def test_the_fast_decoders_structs_give_the_same_rows() -> None:
    orders = [e for e in messy_stream(n=500) if e.type == "OrderCreated"]
    structs = [to_wire(o) for o in orders]
    created = np.array([to_ms(o.created_at) for o in orders], dtype=np.int64)
    np.testing.assert_array_equal(order_matrix(structs, created), order_matrix(orders, created))

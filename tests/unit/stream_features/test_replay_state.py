"""The streaming rules, on the in-memory reference (the Redis path is held to it elsewhere)."""

from __future__ import annotations

import math
from datetime import timedelta

from stream_features.contract import DasherEvent, MarketSupplySnapshot
from stream_features.replay_state import ReplayState
from tests.feature_events import T0, delivered, order


def col(rows, name: str) -> list[float]:  # type: ignore[no-untyped-def]  # reads a FeatureRows; a two-line helper left untyped
    j = rows.names.index(name)
    return [float(v) for v in rows.values[:, j]]


def test_an_order_sees_the_events_before_it_not_itself_nor_after() -> None:
    state = ReplayState()
    events = [order(f"o{i}", T0 + timedelta(seconds=10 * i)) for i in range(4)]
    rows = state.update_and_read(events)
    assert col(rows, "store__orders_created__10m") == [0, 1, 2, 3]
    assert col(rows, "store__outstanding_orders") == [0, 1, 2, 3]


def test_windows_expire_in_event_time() -> None:
    state = ReplayState()
    rows = state.update_and_read(
        [
            order("a", T0),
            order("b", T0 + timedelta(minutes=11)),
            order("c", T0 + timedelta(minutes=11, seconds=1)),
        ]
    )
    assert col(rows, "store__orders_created__10m") == [0, 0, 1]
    assert col(rows, "store__orders_created__30m") == [0, 1, 2]


def test_delivery_feeds_duration_mean_and_outstanding() -> None:
    state = ReplayState()
    first = order("a", T0)
    rows = state.update_and_read(
        [
            first,
            delivered(first, T0 + timedelta(minutes=30)),
            order("b", T0 + timedelta(minutes=31)),
        ]
    )
    assert col(rows, "store__outstanding_orders") == [0, 0]
    assert col(rows, "store__delivery_duration_mean__60m")[1] == 1800.0
    assert math.isnan(col(rows, "store__delivery_duration_mean__60m")[0])


def test_duplicates_count_once_and_late_events_are_left_out() -> None:
    state = ReplayState(lateness_s=300)
    a = order("a", T0 + timedelta(minutes=20))
    rows = state.update_and_read([a, a, order("late", T0), order("x", T0 + timedelta(minutes=21))])
    assert rows.stats == {"applied": 2, "duplicates": 1, "late": 1, "unmatched": 0}
    assert col(rows, "store__orders_created__10m")[-1] == 1


def test_snapshot_then_dasher_events_move_the_gauges() -> None:
    state = ReplayState()
    state.update_and_read(
        [
            MarketSupplySnapshot(
                market_id="m1", at=T0, onshift_dashers=10, busy_dashers=4, outstanding_orders=0
            ),
            DasherEvent(
                dasher_id="d1", market_id="m1", kind="assigned", at=T0 + timedelta(seconds=5)
            ),
            DasherEvent(
                dasher_id="d2", market_id="m1", kind="shift_start", at=T0 - timedelta(seconds=5)
            ),
        ]
    )
    rows = state.read([order("a", T0 + timedelta(seconds=10))])
    assert col(rows, "market__busy_dashers") == [5]
    assert col(rows, "market__onshift_dashers") == [10]  # older than the snapshot: included in it
    assert col(rows, "market__busy_ratio") == [0.5]


def test_read_changes_nothing() -> None:
    state = ReplayState()
    state.update_and_read([order("a", T0)])
    probe = order("b", T0 + timedelta(seconds=1))
    assert col(state.read([probe]), "store__orders_created__10m") == [1]
    assert col(state.read([probe]), "store__orders_created__10m") == [1]

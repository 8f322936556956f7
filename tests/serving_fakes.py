"""In-memory stand-ins for the serving core's ports (features, model) and event builders.

Fakes, not mocks: ``MemoryFeatures`` keeps real per-store counts with the feature layer's
semantics (each order read before its own update, replays deduplicated by event id), so the
tests exercise what the core does with real-shaped rows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from bench.loads import LinearModel
from stream_features.contract import OrderCreated, encode, event_id, to_ms
from stream_features.definitions import feature_names
from stream_features.vectors import FeatureRows
from stream_features.wire_decode import AnyEvent, AnyOrder

__all__ = ["T0", "LinearModel", "MemoryFeatures", "dasher_event", "ms", "order", "order_bytes"]

STORE_10M = "store__orders_created__10m"
T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def order(i: int, *, store: str = "s1", at: datetime | None = None, **over: Any) -> OrderCreated:
    fields: dict[str, Any] = dict(
        order_id=f"o{i}",
        created_at=at or T0 + timedelta(seconds=i),
        market_id="m1",
        store_id=store,
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
    fields.update(over)
    return OrderCreated(**fields)


def order_bytes(i: int, **over: Any) -> bytes:
    return encode(order(i, **over))


def dasher_event(at: datetime = T0) -> bytes:
    return orjson.dumps(
        {"type": "DasherEvent", "dasher_id": "d1", "market_id": "m1", "kind": "assigned", "at": at},
        option=orjson.OPT_UTC_Z,
    )


class MemoryFeatures:
    """A ``FeatureSource`` in a dict: per-store order counts, everything else missing."""

    def __init__(self) -> None:
        self.names = feature_names()
        self.store_orders: Counter[str] = Counter()
        self.seen: set[str] = set()
        self.calls: list[int] = []
        self.failures_left = 0

    def update_and_read(self, events: Sequence[AnyEvent]) -> FeatureRows:
        self.calls.append(len(events))
        if self.failures_left:
            self.failures_left -= 1
            raise ConnectionError("redis is down (fake)")
        col = self.names.index(STORE_10M)
        rows: list[npt.NDArray[np.float64]] = []
        orders: list[AnyOrder] = []
        fresh: list[float] = []
        duplicates = 0
        for event in events:
            new = event_id(event) not in self.seen
            self.seen.add(event_id(event))
            duplicates += not new
            if event.type == "OrderCreated":
                row = np.full(len(self.names), np.nan)
                row[col] = self.store_orders[event.store_id]
                rows.append(row)
                orders.append(event)
                fresh.append(float("nan") if not self.store_orders[event.store_id] else 1.5)
                self.store_orders[event.store_id] += new
        values = np.array(rows, dtype=np.float64).reshape(len(rows), len(self.names))
        stats = {"applied": len(events) - duplicates, "duplicates": duplicates, "late": 0}
        return FeatureRows(self.names, values, np.array(fresh, dtype=np.float64), orders, stats)

    def read(self, orders: Sequence[OrderCreated]) -> FeatureRows:
        raise NotImplementedError("the streaming core never reads without updating")


def ms(value: datetime) -> int:
    return to_ms(value)

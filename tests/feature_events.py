"""Small hand-built event streams for feature tests (no simulator needed)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from stream_features.contract import (
    DasherEvent,
    Event,
    MarketSupplySnapshot,
    OrderCreated,
    OrderDelivered,
)

T0 = datetime(2026, 3, 2, tzinfo=UTC)


def order(
    order_id: str, at: datetime, store: str = "s1", market: str = "m1", category: str = "pizza"
) -> OrderCreated:
    return OrderCreated(
        order_id=order_id,
        created_at=at,
        market_id=market,
        store_id=store,
        store_category=category,
        order_protocol=1,
        total_items=3,
        subtotal=2400,
        num_distinct_items=2,
        min_item_price=400,
        max_item_price=1200,
        estimated_order_place_duration_s=120,
        estimated_store_to_consumer_driving_duration_s=600,
    )


def delivered(o: OrderCreated, at: datetime) -> OrderDelivered:
    return OrderDelivered(
        order_id=o.order_id, store_id=o.store_id, market_id=o.market_id, delivered_at=at
    )


def messy_stream(
    n: int = 20_000, seed: int = 1, stores: int = 50, spacing_s: float = 0.9
) -> list[Event]:
    """Orders, deliveries, snapshots and dasher events, out of order, late and duplicated."""
    rng = random.Random(seed)
    events: list[Event] = []
    open_orders: list[OrderCreated] = []
    for i in range(n):
        at = T0 + timedelta(seconds=i * spacing_s + rng.uniform(-400, 30))
        store = f"s{rng.randrange(stores)}"
        market = f"m{int(store[1:]) % 3}"
        r = rng.random()
        if r < 0.55:
            o = order(f"o{i}", at, store, market, rng.choice(["pizza", "thai", "sushi"]))
            events.append(o)
            open_orders.append(o)
        elif r < 0.9 and open_orders:
            o = open_orders.pop(rng.randrange(len(open_orders)))
            events.append(delivered(o, max(at, o.created_at + timedelta(minutes=5))))
        elif r < 0.95:
            events.append(
                MarketSupplySnapshot(
                    market_id=market,
                    at=at,
                    onshift_dashers=20,
                    busy_dashers=rng.randrange(20),
                    outstanding_orders=3,
                )
            )
        else:
            events.append(
                DasherEvent(
                    dasher_id=f"d{i}",
                    market_id=market,
                    at=at,
                    kind=rng.choice(["shift_start", "shift_end", "assigned", "freed"]),
                )
            )
        if rng.random() < 0.03:
            events.append(events[rng.randrange(len(events))])
    return events

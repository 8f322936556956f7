"""A steady marketplace load for memory and throughput measurements of the feature layer.

Fixed active entities (``stores`` in ``markets``), event time advancing steadily: each order is
``spacing_s`` after the last, delivered ``20``–``60`` minutes later (1% never are), and every
market publishes a supply snapshot every ``snapshot_every_s``. Events are built with
``model_construct`` (valid by construction), so generating a million costs seconds, not minutes.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator
from datetime import timedelta

from stream_features.contract import Event, MarketSupplySnapshot, OrderCreated, OrderDelivered
from tests.feature_events import T0

__all__ = ["steady_load"]

_CATEGORIES = ("pizza", "thai", "sushi", "burgers", "salad", "mexican")


def steady_load(
    n_events: int,
    *,
    stores: int = 2000,
    markets: int = 6,
    spacing_s: float = 0.1,
    snapshot_every_s: float = 30.0,
    seed: int = 7,
) -> Iterator[Event]:
    """``n_events`` events in event-time order (orders, deliveries, snapshots)."""
    rng = random.Random(seed)
    due: list[tuple[float, int, OrderCreated]] = []  # (delivery time s, seq, order)
    next_snapshot = 0.0
    emitted = i = 0
    while emitted < n_events:
        now = i * spacing_s
        while due and due[0][0] <= now and emitted < n_events:
            at_s, _, created = heapq.heappop(due)
            yield OrderDelivered.model_construct(
                type="OrderDelivered",
                order_id=created.order_id,
                store_id=created.store_id,
                market_id=created.market_id,
                delivered_at=T0 + timedelta(seconds=at_s),
                picked_up_at=None,
            )
            emitted += 1
        while next_snapshot <= now and emitted < n_events:
            for m in range(markets):
                if emitted >= n_events:
                    break
                yield MarketSupplySnapshot.model_construct(
                    type="MarketSupplySnapshot",
                    market_id=f"m{m}",
                    at=T0 + timedelta(seconds=next_snapshot),
                    onshift_dashers=200 + rng.randrange(50),
                    busy_dashers=rng.randrange(200),
                    outstanding_orders=rng.randrange(300),
                )
                emitted += 1
            next_snapshot += snapshot_every_s
        if emitted >= n_events:
            break
        store = rng.randrange(stores)
        created = OrderCreated.model_construct(
            type="OrderCreated",
            order_id=f"o{i}",
            created_at=T0 + timedelta(seconds=now),
            market_id=f"m{store % markets}",
            store_id=f"s{store}",
            store_category=_CATEGORIES[store % len(_CATEGORIES)],
            order_protocol=1 + store % 5,
            total_items=3,
            subtotal=2400,
            num_distinct_items=2,
            min_item_price=400,
            max_item_price=1200,
            estimated_order_place_duration_s=120,
            estimated_store_to_consumer_driving_duration_s=600,
            store_lat=None,
            store_lon=None,
            consumer_lat=None,
            consumer_lon=None,
        )
        yield created
        emitted += 1
        if rng.random() >= 0.01:
            heapq.heappush(due, (now + rng.uniform(1200, 3600), i, created))
        i += 1

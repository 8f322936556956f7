"""Loads the benches and the tests both run, in one place: what one measures is what the
other checks.

- ``steady_load``: a steady marketplace for memory and throughput measurements of the feature
  layer. Fixed active entities (``stores`` in ``markets``), event time advancing steadily: each
  order is ``spacing_s`` after the last, delivered ``20``–``60`` minutes later (1% never are),
  and every market publishes a supply snapshot every ``snapshot_every_s``. Events are built
  with ``model_construct`` (valid by construction), so a million cost seconds, not minutes.
- ``live_orders`` (stamped now) and ``produce`` (records, every one acknowledged).
- ``old_records`` and ``produce_in_small_batches``: old events behind live ones, as the
  README's walkthrough once wrote them (issue #22): a week-old history of the live orders'
  stores and markets in record batches of two, as a paced ``eta produce replay`` writes them.
- ``LinearModel``: a model of known output; ``keys_memory``: what a key prefix holds in Redis.

They live in the bench package rather than the product: they are measuring instruments with
fixed seeds, not features, and ``producers/`` may import only ``stream_features``, while
``bench.monitor_scenario`` trains a model. Tests import ``bench.loads``; bench imports nothing
from ``tests/``.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import redis
from confluent_kafka import Producer

from stream_features.contract import (
    Event,
    MarketSupplySnapshot,
    OrderCreated,
    OrderDelivered,
    encode,
)
from stream_features.definitions import feature_names
from stream_features.kafka_clients import producer_config
from stream_features.settings import Settings

__all__ = [
    "STEADY_T0",
    "LinearModel",
    "keys_memory",
    "live_orders",
    "old_records",
    "produce",
    "produce_in_small_batches",
    "steady_load",
]

STEADY_T0 = datetime(2026, 3, 2, tzinfo=UTC)  # steady_load's first event time
STORE_10M = "store__orders_created__10m"
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
                delivered_at=STEADY_T0 + timedelta(seconds=at_s),
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
                    at=STEADY_T0 + timedelta(seconds=next_snapshot),
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
            created_at=STEADY_T0 + timedelta(seconds=now),
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


def live_orders(n: int, prefix: str, stores: int = 200, start: int = 0) -> list[OrderCreated]:
    """``n`` orders stamped just now, spread over ``stores`` stores in 10 markets."""
    now = datetime.now(UTC)
    out = []
    for i in range(start, start + n):
        store = i % stores
        out.append(
            OrderCreated(
                order_id=f"{prefix}{i}",
                created_at=now - timedelta(milliseconds=n - i),
                market_id=f"m{store % 10}",
                store_id=f"s{store}",
                store_category=("pizza", "thai", "sushi")[store % 3],
                order_protocol=1 + store % 5,
                total_items=1 + i % 7,
                subtotal=1500 + (i * 37) % 5000,
                num_distinct_items=1,
                min_item_price=500,
                max_item_price=1500,
                estimated_order_place_duration_s=300,
                estimated_store_to_consumer_driving_duration_s=600 + store,
            )
        )
    return out


def produce(settings: Settings, records: Iterable[tuple[str, bytes | None, bytes | None]]) -> int:
    """Produce (topic, key, value) records and wait until every one is acknowledged."""
    producer = Producer({**producer_config(settings), "linger.ms": 20})
    errors: list[str] = []

    def check(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    count = 0
    for topic, key, value in records:
        while True:
            try:
                producer.produce(topic, value, key, on_delivery=check)
                break
            except BufferError:
                producer.poll(0.05)
        count += 1
    assert producer.flush(30) == 0, "records left unacknowledged"
    assert not errors, errors[:5]
    return count


def old_records(settings: Settings, orders: int, snapshots: int) -> list[tuple[str, bytes, bytes]]:
    """A week ago, in event-time order: the live orders' stores and markets (``live_orders``:
    store ``s<k>`` in market ``m<k % 10>``), their snapshots and orders."""
    start = datetime.now(UTC) - timedelta(days=7)
    out: list[tuple[str, bytes, bytes]] = []
    snapshots_per_order = snapshots // orders
    for i in range(orders):
        at = start + timedelta(seconds=25 * i)
        for j in range(snapshots_per_order):
            market = f"m{(i * snapshots_per_order + j) % 10}"
            snapshot = {
                "type": "MarketSupplySnapshot",
                "market_id": market,
                "at": (at + timedelta(seconds=j)).isoformat(),
                "onshift_dashers": 40,
                "busy_dashers": 20,
                "outstanding_orders": 10,
            }
            out.append((settings.dasher_events_topic, market.encode(), orjson.dumps(snapshot)))
        [order] = live_orders(1, "old-", stores=40, start=i)
        order = order.model_copy(update={"created_at": at})
        out.append((settings.orders_topic, order.store_id.encode(), encode(order)))
    return out


def produce_in_small_batches(settings: Settings, records: list[tuple[str, bytes, bytes]]) -> int:
    """Two records per produce request and record batch, as a paced replay writes them."""
    producer = Producer({**producer_config(settings), "linger.ms": 0})
    for start in range(0, len(records), 2):
        for topic, key, value in records[start : start + 2]:
            producer.produce(topic, value, key)
        assert producer.flush(30) == 0, "records left unacknowledged"
    return len(records)


class LinearModel:
    """A model of known output: 600 s plus a minute per order in the store's last 10 minutes."""

    def __init__(self, version: str = "1", name: str = "eta") -> None:
        self.name, self.version = name, version
        self.col = feature_names().index(STORE_10M)
        self.calls: list[int] = []
        self.override: dict[int, float] = {}

    def predict(self, values: npt.NDArray[np.float64], /) -> npt.NDArray[np.float64]:
        self.calls.append(values.shape[0])
        out = 600.0 + 60.0 * values[:, self.col]
        for row, value in self.override.items():
            out[row] = value
        return out


def keys_memory(client: redis.Redis, prefix: str) -> tuple[int, int]:
    """Bytes (``MEMORY USAGE``, summed) and number of the keys under ``prefix``."""
    total = count = 0
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        total += int(client.memory_usage(key, samples=0) or 0)
        count += 1
    return total, count

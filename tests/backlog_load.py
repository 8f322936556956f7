"""Old events behind live ones, as the README's walkthrough once wrote them (issue #22).

Live orders first (stamped now, produced in large record batches), then a week-old history of
the same stores and markets (snapshots and orders, stamped in the past) in record batches of
two, as a paced ``eta produce replay`` writes them. Used by
``tests/integration/test_worker_backlog.py`` and ``bench/backlog.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
from confluent_kafka import Producer

from stream_features.contract import encode
from stream_features.kafka_clients import producer_config
from stream_features.settings import Settings
from tests.integration.worker_helpers import live_orders

__all__ = ["old_records", "produce_in_small_batches"]


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

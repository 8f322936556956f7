"""Traffic for the fault scenarios: orders streamed in the background, and a large steady load.

``steady_records`` is the wire-level twin of ``bench.loads.steady_load`` (same shape:
fixed active stores and markets, orders ``spacing_s`` apart in event time, each delivered 20–60
minutes later, 1% never, a supply snapshot per market every ``snapshot_every_s``), but it yields
encoded records ready to produce: building a million pydantic events would cost the suite
half a minute, a dict through orjson costs a microsecond.
"""

from __future__ import annotations

import heapq
import random
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
from confluent_kafka import Producer

from stream_features.contract import OrderCreated, encode
from stream_features.kafka_clients import producer_config
from stream_features.settings import Settings

__all__ = ["Background", "Record", "steady_records", "stream_orders", "stream_records"]

Record = tuple[str, bytes | None, bytes | None]
"""(topic, key, value), as ``produce`` takes them."""
_CATEGORIES = ("pizza", "thai", "sushi", "burgers", "salad", "mexican")
_T0_MS = int(datetime(2026, 3, 2, tzinfo=UTC).timestamp() * 1000)


class Background:
    """``target`` on a daemon thread; ``join`` re-raises what it raised. ``sent`` is for the
    target to count what it has produced, so a test can see the stream go on."""

    def __init__(self, target: Callable[[Background], None], name: str) -> None:
        self._failure: list[BaseException] = []
        self.sent = 0

        def run() -> None:
            try:
                target(self)
            except BaseException as exc:
                self._failure.append(exc)

        self._thread = threading.Thread(target=run, name=name, daemon=True)
        self._thread.start()

    def done(self) -> bool:
        return not self._thread.is_alive()

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), f"{self._thread.name} still running after {timeout_s} s"
        if self._failure:
            raise self._failure[0]


def stream_records(
    settings: Settings, records: list[Record], chunk: int = 1000, pause_s: float = 0.05
) -> Background:
    """Produce ``records`` a chunk at a time, a pause between chunks: a stream rather than one
    burst, so that a fault lands mid-way."""

    def run(me: Background) -> None:
        # one producer for the whole stream: starting an idempotent producer costs ~0.5 s here
        producer = Producer(producer_config(settings))
        failed: list[str] = []

        def check(err: object, _msg: object) -> None:
            if err is not None:
                failed.append(str(err))

        for start in range(0, len(records), chunk):
            for topic, key, value in records[start : start + chunk]:
                _send(producer, topic, key, value, check)
            assert producer.flush(30) == 0, "records left unacknowledged"
            assert not failed, failed[:5]
            me.sent += len(records[start : start + chunk])
            time.sleep(pause_s)

    return Background(run, "record-stream")


def _send(
    producer: Producer,
    topic: str,
    key: bytes | None,
    value: bytes | None,
    on_delivery: Callable[[Any, Any], None],
) -> None:
    while True:
        try:
            producer.produce(topic, value, key, on_delivery=on_delivery)
            return
        except BufferError:  # the local queue is full: let deliveries drain it
            producer.poll(0.05)


def stream_orders(
    settings: Settings, orders: list[OrderCreated], chunk: int = 1000, pause_s: float = 0.05
) -> Background:
    """``stream_records`` of orders, each on the orders topic under its store."""
    topic = settings.orders_topic
    records: list[Record] = [(topic, o.store_id.encode(), encode(o)) for o in orders]
    return stream_records(settings, records, chunk, pause_s)


def _iso(ms: int) -> str:
    """
    >>> _iso(1772409600100)
    '2026-03-02T00:00:00.100000+00:00'
    """
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def steady_records(
    n_events: int,
    *,
    stores: int = 2000,
    markets: int = 6,
    spacing_s: float = 0.1,
    snapshot_every_s: float = 30.0,
    seed: int = 7,
) -> Iterator[tuple[str, bytes, bytes]]:
    """``n_events`` records ``(kind, key, value)`` in event-time order, ``kind`` one of
    ``orders``, ``deliveries``, ``dasher-events`` (the source topic each goes to).

    >>> from stream_features.contract import decode
    >>> [(k, type(decode(v)).__name__) for k, _, v in steady_records(8, markets=2)][:4]
    [('dasher-events', 'MarketSupplySnapshot'), ('dasher-events', 'MarketSupplySnapshot'), \
('orders', 'OrderCreated'), ('orders', 'OrderCreated')]
    """
    rng = random.Random(seed)
    due: list[tuple[int, int, str, str]] = []  # (delivered ms, order number, store, market)
    spacing_ms, snapshot_ms = int(spacing_s * 1000), int(snapshot_every_s * 1000)
    next_snapshot = 0
    emitted = i = 0
    while emitted < n_events:
        now = i * spacing_ms
        while due and due[0][0] <= now and emitted < n_events:
            at, number, store, market = heapq.heappop(due)
            yield (
                "deliveries",
                store.encode(),
                orjson.dumps(
                    {
                        "type": "OrderDelivered",
                        "order_id": f"o{number}",
                        "store_id": store,
                        "market_id": market,
                        "delivered_at": _iso(_T0_MS + at),
                    }
                ),
            )
            emitted += 1
        while next_snapshot <= now and emitted < n_events:
            for m in range(markets):
                if emitted >= n_events:
                    break
                yield (
                    "dasher-events",
                    f"m{m}".encode(),
                    orjson.dumps(
                        {
                            "type": "MarketSupplySnapshot",
                            "market_id": f"m{m}",
                            "at": _iso(_T0_MS + next_snapshot),
                            "onshift_dashers": 200 + rng.randrange(50),
                            "busy_dashers": rng.randrange(200),
                            "outstanding_orders": rng.randrange(300),
                        }
                    ),
                )
                emitted += 1
            next_snapshot += snapshot_ms
        if emitted >= n_events:
            break
        s = rng.randrange(stores)
        store, market = f"s{s}", f"m{s % markets}"
        yield (
            "orders",
            store.encode(),
            orjson.dumps(
                {
                    "type": "OrderCreated",
                    "order_id": f"o{i}",
                    "created_at": _iso(_T0_MS + now),
                    "market_id": market,
                    "store_id": store,
                    "store_category": _CATEGORIES[s % len(_CATEGORIES)],
                    "order_protocol": 1 + s % 5,
                    "total_items": 3,
                    "subtotal": 2400,
                    "num_distinct_items": 2,
                    "min_item_price": 400,
                    "max_item_price": 1200,
                    "estimated_order_place_duration_s": 120,
                    "estimated_store_to_consumer_driving_duration_s": 600,
                }
            ),
        )
        emitted += 1
        if rng.random() >= 0.01:
            heapq.heappush(due, (now + rng.randrange(1_200_000, 3_600_000), i, store, market))
        i += 1

"""The peer benchmark's one input: simulated OrderCreated events, loaded on a fresh topic.

Orders come from the marketplace simulator (6 markets, 2,000 stores with skewed popularity),
its rate scaled so that ``n`` orders span ``span_s`` of event time ending an hour ago. Each
record is keyed by store (a store's orders stay in one partition, in event-time order) and its
Kafka timestamp is the order's ``created_at``, which the peers use as event time; etastream
reads ``created_at`` from the payload. The expected count of every order is computed here,
once, by the oracle in ``peers_check``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.peers_check import expected_counts
from stream_features.contract import OrderCreated, OrderDelivered, encode, to_ms

__all__ = ["BenchInput", "batch_tables", "build_input", "load_topic", "simulate_orders"]

_SEED = 7


@dataclass(frozen=True)
class BenchInput:
    """Records in the order they are produced, and the oracle's count per order id."""

    keys: list[bytes]
    values: list[bytes]
    ts_ms: list[int]
    expected: dict[str, int]
    stores: int
    markets: int

    def describe(self) -> dict[str, Any]:
        span_s = (self.ts_ms[-1] - self.ts_ms[0]) / 1000
        return {
            "orders": len(self.values),
            "stores": self.stores,
            "markets": self.markets,
            "event_time_from": _iso(self.ts_ms[0]),
            "event_time_to": _iso(self.ts_ms[-1]),
            "event_time_span_h": round(span_s / 3600, 2),
            "bytes": sum(len(v) for v in self.values),
            "max_expected_count": max(self.expected.values()),
            "mean_expected_count": round(sum(self.expected.values()) / len(self.expected), 2),
        }


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def simulate_orders(
    n: int, start: datetime, span_s: float, seed: int = _SEED
) -> list[OrderCreated]:
    """The first ``n`` orders of a marketplace whose rate puts about ``n`` in ``span_s``."""
    from producers.config import SimConfig
    from producers.simulator import Marketplace

    unit = Marketplace(SimConfig(), seed=seed)
    start_ms = to_ms(start)
    expected_default = sum(  # orders the default config would make in the span
        unit.rate(m, start_ms + minute * 60_000, start_ms) * 60
        for m in range(len(unit.world.markets))
        for minute in range(int(span_s // 60))
    )
    per_day = SimConfig().orders_per_day * n / expected_default
    market = Marketplace(SimConfig(orders_per_day=per_day, dasher_events=False), seed=seed)
    orders: list[OrderCreated] = []
    for event in market.events(start, start + timedelta(seconds=span_s * 2)):
        if isinstance(event, OrderCreated):
            orders.append(event)
            if len(orders) == n:
                break
    return orders


def build_input(n: int, span_s: float = 2.5 * 3600, now: datetime | None = None) -> BenchInput:
    """``n`` orders over about ``span_s`` of event time, ending about an hour before ``now``."""
    now = now or datetime.now(UTC)
    start = now.replace(second=0, microsecond=0) - timedelta(seconds=span_s) - timedelta(hours=1)
    orders = simulate_orders(n, start, span_s)
    if len(orders) < n:
        raise RuntimeError(f"the simulator made {len(orders)} orders, not {n}")
    if len({o.order_id for o in orders}) != n:
        raise RuntimeError("the simulator repeated an order id")
    ts = [to_ms(o.created_at) for o in orders]
    return BenchInput(
        keys=[o.store_id.encode() for o in orders],
        values=[encode(o) for o in orders],
        ts_ms=ts,
        expected=expected_counts(
            (o.order_id, o.store_id, t) for o, t in zip(orders, ts, strict=True)
        ),
        stores=len({o.store_id for o in orders}),
        markets=len({o.market_id for o in orders}),
    )


def load_topic(bootstrap: str, topic: str, data: BenchInput) -> float:
    """Produce every record (timestamp = ``created_at``); raises unless all were acked.

    Returns the seconds it took."""
    import time

    from confluent_kafka import Producer

    failures: list[str] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            failures.append(str(err))

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 20,
            "compression.type": "lz4",
        }
    )
    started = time.perf_counter()
    for key, value, ts in zip(data.keys, data.values, data.ts_ms, strict=True):
        while True:
            try:
                producer.produce(topic, value, key, timestamp=ts, on_delivery=on_delivery)
                break
            except BufferError:  # local queue full: let it drain
                producer.poll(0.05)
        producer.poll(0)
    left = producer.flush(120)
    if left or failures:
        raise RuntimeError(f"loading {topic}: {left} unsent, {len(failures)} failed {failures[:3]}")
    return time.perf_counter() - started


def batch_tables(start: datetime, days: float = 2.0, seed: int = _SEED) -> Any:
    """Batch features (``stream_features.batch``) from ``days`` of the same marketplace's
    history before ``start``, so etastream's worker reads real batch values for these stores."""
    from producers.config import SimConfig
    from producers.simulator import Marketplace
    from stream_features.batch import compute_batch_tables, deliveries_frame

    orders: list[OrderCreated] = []
    done: list[OrderDelivered] = []
    market = Marketplace(SimConfig(dasher_events=False), seed=seed)
    for event in market.events(start - timedelta(days=days), start):
        if isinstance(event, OrderCreated):
            orders.append(event)
        elif isinstance(event, OrderDelivered):
            done.append(event)
    return compute_batch_tables(deliveries_frame(orders, done), start)

"""Helpers of the stream worker's integration tests: produce, read back, run a worker.

Everything here talks to the real broker and Redis of the session stack; reads wait with a
deadline for what they expect, never for a fixed time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import Consumer, Message, Producer

from predictor.engines.confluent import ConfluentWorker
from predictor.engines.wiring import confluent_worker
from predictor.serving.metrics import StreamMetrics
from predictor.serving.pipeline import ScoringModel
from stream_features.contract import OrderCreated, encode
from stream_features.kafka_clients import producer_config
from stream_features.settings import Settings
from stream_features.vectors import FeatureSource

__all__ = [
    "TopicReader",
    "live_orders",
    "produce",
    "produce_orders",
    "running_worker",
]


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


def produce_orders(settings: Settings, orders: Iterable[OrderCreated]) -> int:
    return produce(
        settings, ((settings.orders_topic, o.store_id.encode(), encode(o)) for o in orders)
    )


class TopicReader:
    """Reads a topic from the beginning in a group of its own, accumulating what arrives."""

    def __init__(self, settings: Settings, topic: str, group: str | None = None) -> None:
        self.messages: list[Message] = []
        self._consumer = Consumer(
            {
                "bootstrap.servers": settings.kafka_bootstrap_servers,
                "group.id": group or f"reader-{topic}-{time.time_ns()}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "session.timeout.ms": settings.session_timeout_ms,
                "fetch.message.max.bytes": 10_485_760,
            }
        )
        self._consumer.subscribe([topic])

    def read_until(self, done: Callable[[list[Message]], bool], timeout_s: float) -> list[Message]:
        """Poll until ``done(messages)`` or the deadline; returns everything read so far."""
        deadline = time.monotonic() + timeout_s
        while not done(self.messages) and time.monotonic() < deadline:
            for m in self._consumer.consume(10_000, 0.2):
                if m.error() is None:
                    self.messages.append(m)
        return self.messages

    def read_for(self, seconds: float) -> list[Message]:
        """Everything that arrives within ``seconds`` (to show that nothing more comes)."""
        return self.read_until(lambda _m: False, seconds)

    def close(self) -> None:
        self._consumer.close()


@contextmanager
def running_worker(
    settings: Settings,
    features: FeatureSource,
    model: ScoringModel | Callable[[], ScoringModel],
    metrics: StreamMetrics | None = None,
) -> Iterator[ConfluentWorker]:
    """A confluent worker in a thread; stopped (finish, flush, commit) when the block ends."""
    models = model if callable(model) and not hasattr(model, "predict") else (lambda: model)
    worker = confluent_worker(settings, features, models, metrics)  # type: ignore[arg-type]
    stop = threading.Event()
    failure: list[BaseException] = []

    def target() -> None:
        try:
            worker.run(stop)
        except BaseException as exc:  # re-raised in the test's thread
            failure.append(exc)

    thread = threading.Thread(target=target, name="stream-worker", daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        stop.set()
        thread.join(60)
        assert not thread.is_alive(), "the worker did not stop within 60 s"
    if failure:
        raise failure[0]

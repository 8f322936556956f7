"""Publish events to their topics with confluent-kafka, checking every delivery report.

The producer is idempotent with ``acks=all`` (``kafka_clients.producer_config``). Every message
gets a delivery callback; a failure is counted and makes the next ``publish`` or the final
``flush`` raise ``PublishError``, so an event is never dropped silently.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from producers.errors import PublishError
from stream_features.contract import (
    DasherEvent,
    Event,
    MarketSupplySnapshot,
    OrderCreated,
    OrderDelivered,
    encode,
)
from stream_features.settings import Settings

__all__ = ["Publisher", "Routes"]


@dataclass(frozen=True)
class Routes:
    """Where each kind of event goes, and under which key (DESIGN.md's contract table)."""

    orders: str = "orders"
    dasher_events: str = "dasher-events"
    deliveries: str = "deliveries"

    @classmethod
    def from_settings(cls, settings: Settings) -> Routes:
        return cls(settings.orders_topic, settings.dasher_events_topic, settings.deliveries_topic)

    def topics(self) -> list[str]:
        return [self.orders, self.dasher_events, self.deliveries]

    def route(self, event: Event) -> tuple[str, str]:
        """(topic, key) of an event: orders and deliveries by store, supply by market.

        >>> from stream_features.contract import decode
        >>> Routes().route(decode(b'{"type":"DasherEvent","dasher_id":"d1","market_id":"m1",'
        ...                       b'"kind":"shift_start","at":"2026-01-01T12:00:00Z"}'))
        ('dasher-events', 'm1')
        """
        if isinstance(event, OrderCreated):
            return self.orders, event.store_id
        if isinstance(event, OrderDelivered):
            return self.deliveries, event.store_id
        if isinstance(event, DasherEvent | MarketSupplySnapshot):
            return self.dasher_events, event.market_id
        raise TypeError(f"no topic for {type(event).__name__}")  # pragma: no cover


class Publisher:
    """A Kafka producer that routes events and refuses to lose any.

    Use as a context manager: leaving the block flushes and raises if any event failed.
    ``sent`` counts acknowledged events, ``failed`` refused or unacknowledged ones.
    """

    def __init__(self, config: dict[str, Any], routes: Routes) -> None:
        from confluent_kafka import Producer

        self.routes = routes
        self._producer = Producer(config)
        self.sent = 0
        self.failed = 0
        self.produced = 0
        self.by_topic: Counter[str] = Counter()
        self._first_error: str | None = None

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.failed += 1
            if self._first_error is None:
                self._first_error = f"{msg.topic()}: {err.str()}"
        else:
            self.sent += 1

    def _raise_if_failed(self) -> None:
        if self.failed:
            raise PublishError(self.failed, self.sent, self._first_error or "unknown")

    def publish(self, event: Event) -> None:
        """Queue one event on its topic under its key (asynchronous; see ``flush``)."""
        topic, key = self.routes.route(event)
        self.publish_raw(topic, key.encode(), encode(event))

    def publish_raw(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Queue bytes as they are; waits for room when the local queue is full."""
        self._raise_if_failed()
        while True:
            try:
                self._producer.produce(topic, value, key, on_delivery=self._on_delivery)
                break
            except BufferError:  # local queue full: serve callbacks until there is room
                self._producer.poll(0.05)
        self.produced += 1
        self.by_topic[topic] += 1
        self._producer.poll(0)

    def poll(self, timeout_s: float = 0.0) -> None:
        """Serve delivery callbacks for up to ``timeout_s``; raise if any delivery failed."""
        self._producer.poll(timeout_s)
        self._raise_if_failed()

    def flush(self, timeout_s: float = 60.0) -> None:
        """Wait until every queued event is acknowledged, or raise ``PublishError``."""
        remaining = int(self._producer.flush(timeout_s))
        if remaining:
            self.failed += remaining
            self._first_error = self._first_error or (
                f"{remaining} event(s) still unacknowledged after {timeout_s:g}s"
            )
        self._raise_if_failed()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.flush()
            return
        try:  # deliver what was queued, but let the original error through
            self.flush()
        except PublishError as failed:
            exc.add_note(str(failed))

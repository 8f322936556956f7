"""Queue records on a Kafka producer without losing one to a full local queue: the one send
loop of the stream worker (plain and transactional) and the event publisher.

``produce_batch`` queues a whole batch in one call, about a third of ``produce``'s cost a
message at tens of thousands a second. librdkafka takes what its queue has room for and marks
each message it refused (``_error``); those are queued again, in order, once delivery reports
have drained the queue, so a key's records keep their order. Any other refusal (a message too
large, an unknown topic) is raised: it is the caller's fault, not a moment's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

__all__ = ["produce_all"]

_DRAIN_S = 0.05
"""How long to serve delivery reports before queueing the refused messages again."""


def produce_all(
    producer: Producer,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes]],
    on_delivery: Callable[[Any, Any], None] | None = None,
) -> int:
    """Queue every ``(key, value)`` on ``topic``, waiting for room when the queue is full;
    returns how many were queued (all of them), or raises ``KafkaException``."""
    pending: list[dict[str, Any]] = [{"key": k, "value": v} for k, v in records]
    queued = 0
    while pending:
        if on_delivery is None:
            queued += producer.produce_batch(topic, pending)
        else:
            queued += producer.produce_batch(topic, pending, on_delivery=on_delivery)
        refused = [message for message in pending if "_error" in message]
        for message in refused:
            error = message.pop("_error")
            if error.code() != KafkaError._QUEUE_FULL:
                raise KafkaException(error)
        if refused:
            producer.poll(_DRAIN_S)
        pending = refused
    return queued

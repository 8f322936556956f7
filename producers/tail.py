"""Read a topic for people: decode each message under the contract and show it, or say why not.

``describe`` is pure (bytes in, a JSON-able dict or a reason out); ``follow`` drives a
confluent-kafka consumer and never stops on a bad message.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from stream_features.contract import (
    DeadLetter,
    DeliveryPrediction,
    ShadowPrediction,
    decode,
    rejection,
)
from stream_features.errors import RejectedMessage
from stream_features.settings import Settings

__all__ = ["Shown", "describe", "follow", "resolve_topic", "topic_aliases"]

_OTHER_MESSAGES: dict[str, type[BaseModel]] = {
    "DeliveryPrediction": DeliveryPrediction,
    "ShadowPrediction": ShadowPrediction,
    "DeadLetter": DeadLetter,
}
_EVENT_TYPES = {"OrderCreated", "DasherEvent", "MarketSupplySnapshot", "OrderDelivered"}


def topic_aliases(settings: Settings) -> dict[str, str]:
    """Short names users type, to the configured topic names."""
    return {
        "orders": settings.orders_topic,
        "dasher-events": settings.dasher_events_topic,
        "dashers": settings.dasher_events_topic,
        "deliveries": settings.deliveries_topic,
        "predictions": settings.predictions_topic,
        "dlq": settings.dlq_topic,
        "monitoring": settings.monitoring_topic,
        "shadow": settings.shadow_topic,
    }


def resolve_topic(name: str, aliases: dict[str, str]) -> str:
    """An alias's topic, or the name itself (a configured or any other topic name).

    >>> resolve_topic("dlq", {"dlq": "orders.dlq"}), resolve_topic("raw", {})
    ('orders.dlq', 'raw')
    """
    return aliases.get(name, name)


_MAX_BYTES = 10_485_760
"""The largest message etastream's topics take (``max.message.bytes``); none bigger is parsed."""


def describe(
    value: bytes | None, strict: bool = True, max_bytes: int = _MAX_BYTES
) -> tuple[dict[str, Any] | None, str | None]:
    """(the decoded message, None) or (None, why it could not be decoded).

    Events go through ``contract.decode``; predictions and dead letters through their models.
    With ``strict`` False, a JSON object that names no etastream message is shown as it is
    (topics such as monitoring carry their own records). Nothing over ``max_bytes`` is parsed.

    >>> describe(b'{"type":"OrderDelivered","order_id":"o1","store_id":"s1","market_id":"m1",'
    ...          b'"delivered_at":"2026-01-01T12:00:00+00:00"}')[0]["delivered_at"]
    '2026-01-01T12:00:00Z'
    >>> describe(b"not json")[1].startswith("not valid JSON")
    True
    """
    if value is None:
        return None, "empty message (no value)"
    if len(value) > max_bytes:
        return None, f"message of {len(value)} bytes is over the {max_bytes}-byte limit"
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        return None, f"not valid JSON: {exc}"
    kind = data.get("type") if isinstance(data, dict) else None
    model = _OTHER_MESSAGES.get(kind) if isinstance(kind, str) else None
    if model is not None:
        try:
            return model.model_validate(data).model_dump(mode="json", exclude_none=True), None
        except ValidationError as exc:
            return None, str(rejection(exc))
    if not strict and isinstance(data, dict) and kind not in _EVENT_TYPES:
        return data, None
    try:
        return decode(value).model_dump(mode="json", exclude_none=True), None
    except RejectedMessage as exc:
        return None, str(exc)


@dataclass(frozen=True)
class Shown:
    """One message as ``follow`` hands it on."""

    partition: int
    offset: int
    key: bytes | None
    message: dict[str, Any] | None
    reason: str | None
    raw: bytes | None


def follow(
    consumer: Any,
    emit: Callable[[Shown], None],
    max_messages: int | None = None,
    idle_timeout_s: float | None = None,
    strict: bool = True,
    poll_s: float = 0.2,
) -> int:
    """Poll ``consumer`` and ``emit`` each message until ``max_messages`` or a quiet spell.

    Broker-side errors (other than reaching a partition's end) are emitted as messages with a
    reason; nothing here raises on bad data. Returns how many messages were emitted.
    """
    from confluent_kafka import KafkaError

    shown = 0
    last = time.monotonic()
    while max_messages is None or shown < max_messages:
        msg = consumer.poll(poll_s)
        if msg is None:
            if idle_timeout_s is not None and time.monotonic() - last >= idle_timeout_s:
                break
            continue
        err = msg.error()
        if err is not None:  # not data: does not reset the quiet spell
            if err.code() != KafkaError._PARTITION_EOF:
                emit(Shown(-1, -1, None, None, f"broker: {err.str()}", None))
            continue
        last = time.monotonic()
        message, reason = describe(msg.value(), strict)
        emit(Shown(msg.partition(), msg.offset(), msg.key(), message, reason, msg.value()))
        shown += 1
    return shown

"""From consumed records to what the monitor works with, no I/O: decode, check, route.

A record that does not decode, is not the message its topic carries, or is stamped too far in
the future becomes a dead letter with the reason (nothing rejected disappears); a future stamp
is refused because it would drag every window ahead of the real traffic.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from predictor.monitoring.join import JoinOp, delivery_op, prediction_op, shadow_op
from predictor.monitoring.messages import decode_prediction, decode_shadow
from predictor.serving.dlq import dead_letter
from predictor.serving.records import OutRecord, SourceRecord
from stream_features.contract import (
    DeliveryPrediction,
    OrderDelivered,
    decode,
    to_ms,
)
from stream_features.errors import RejectedMessage

__all__ = ["IntakeConfig", "MonitorBatch", "decode_monitor_batch"]


@dataclass(frozen=True)
class IntakeConfig:
    deliveries_topic: str
    predictions_topic: str
    shadow_topic: str | None = None
    """Where the worker's shadow writes ``ShadowPrediction`` records (None: not read)."""
    max_message_bytes: int = 1_000_000
    max_future_skew_s: int = 3600
    max_dead_letter_bytes: int = 8_000_000


@dataclass
class MonitorBatch:
    predictions: list[DeliveryPrediction] = field(default_factory=list)
    ops: list[JoinOp] = field(default_factory=list)
    """Both sides for the join store, in the order they were consumed."""
    dead_letters: list[OutRecord] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)
    """Rejections by topic."""
    records: Counter[str] = field(default_factory=Counter)
    """Records consumed by topic."""
    reasons: list[str] = field(default_factory=list)


def _future(at_ms: int, now_ms: int, skew_s: int, name: str) -> None:
    ahead_s = (at_ms - now_ms) / 1000
    if ahead_s > skew_s:
        raise RejectedMessage(
            f"stamped {ahead_s:.0f} s in the future, more than the {skew_s} s allowed "
            "(max_future_skew_s)",
            name,
        )


def _one(record: SourceRecord, config: IntakeConfig, now_ms: int) -> JoinOp | DeliveryPrediction:
    value = record.value()
    if value is None:
        raise RejectedMessage("empty message: no value (a tombstone?)")
    if config.shadow_topic is not None and record.topic() == config.shadow_topic:
        shadow = decode_shadow(value, config.max_message_bytes)
        _future(to_ms(shadow.created_at), now_ms, config.max_future_skew_s, "created_at")
        return shadow_op(shadow)
    if record.topic() == config.predictions_topic:
        prediction = decode_prediction(value, config.max_message_bytes)
        _future(to_ms(prediction.created_at), now_ms, config.max_future_skew_s, "created_at")
        return prediction
    event = decode(value, config.max_message_bytes)
    if not isinstance(event, OrderDelivered):
        raise RejectedMessage(
            f"{event.type} does not belong on topic {record.topic()!r} (it carries OrderDelivered)",
            "type",
        )
    _future(to_ms(event.delivered_at), now_ms, config.max_future_skew_s, "delivered_at")
    return delivery_op(event)


def decode_monitor_batch(
    records: Sequence[SourceRecord], config: IntakeConfig, now_ms: int
) -> MonitorBatch:
    """Every record decoded on its own; a bad one becomes a dead letter and the batch goes on.

    >>> from predictor.serving.records import RawRecord
    >>> config = IntakeConfig("deliveries", "predictions")
    >>> batch = decode_monitor_batch([RawRecord(b"{", "predictions", 0, 5)], config, 0)
    >>> batch.rejected["predictions"], batch.reasons[0][:30]
    (1, 'predictions[0]@5: not valid JS')
    """
    batch = MonitorBatch()
    for record in records:
        topic = record.topic() or ""
        batch.records[topic] += 1
        try:
            item = _one(record, config, now_ms)
        except RejectedMessage as exc:
            batch.rejected[topic] += 1
            batch.reasons.append(f"{topic}[{record.partition()}]@{record.offset()}: {exc}")
            batch.dead_letters.append(
                dead_letter(record, exc.reason, exc.field, now_ms, config.max_dead_letter_bytes)
            )
            continue
        if isinstance(item, DeliveryPrediction):
            batch.predictions.append(item)
            batch.ops.append(prediction_op(item))
        else:
            batch.ops.append(item)
    return batch

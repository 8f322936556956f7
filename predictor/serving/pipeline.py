"""The streaming core: raw records in, prediction and dead-letter records out, no I/O.

One call handles one micro-batch: every record is decoded and checked on its own (a bad one
becomes a dead letter and the batch goes on), the valid events go to the feature source in one
call (one round trip), every order in the batch is scored by one vectorised ``predict`` of the
one model the engine hands in, and the results are encoded. Engines move bytes and call this;
a model swap happens between calls, so a batch is scored by exactly one model version.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import numpy as np
import numpy.typing as npt

from predictor.errors import ExplainUnavailable
from predictor.serving.dlq import dead_letter
from predictor.serving.encoding import answers, finite_features
from predictor.serving.explain import explanations
from predictor.serving.ranges import predict_with_range, range_columns
from predictor.serving.records import OutRecord, SourceRecord
from stream_features.contract import STREAM_MODE, event_time, to_ms
from stream_features.errors import RejectedMessage
from stream_features.quality import screen
from stream_features.vectors import FeatureRows, FeatureSource
from stream_features.wire_decode import AnyEvent, WireEvent, decode_fast

__all__ = [
    "BatchResult",
    "DecodedBatch",
    "PipelineConfig",
    "ScoringModel",
    "check_event_time",
    "decode_batch",
    "process_batch",
    "score_batch",
]

_TIME_FIELD = {"OrderCreated": "created_at", "OrderDelivered": "delivered_at"}


class ScoringModel(Protocol):
    """What the core needs of a model: who it is, and a vectorised predict in seconds."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    def predict(self, values: npt.NDArray[np.float64], /) -> npt.NDArray[np.float64]: ...


@dataclass(frozen=True)
class PipelineConfig:
    """Plain values the core runs with (the engine builds them from ``Settings``).

    ``topic_types`` maps a topic to the message types allowed on it; a topic missing from it
    accepts any valid event. ``contract_strict`` rejects an event with a data-quality finding
    (``stream_features.quality``) rather than keeping and counting it.
    """

    max_message_bytes: int = 1_000_000
    max_future_skew_s: int = 3600
    contract_strict: bool = False
    include_features: bool = False
    feature_names: tuple[str, ...] = ()  # with include_features: only these; empty: all
    with_range: bool = True  # the model's p10-p90 range on each prediction, when it has one
    explain: bool = False  # each prediction's reasons (``serving.explain``), when the model can
    max_dead_letter_bytes: int = 10_000_000
    topic_types: Mapping[str, frozenset[str]] = field(default_factory=dict)


@dataclass
class BatchResult:
    """What one batch produced, and the counts the engine turns into metrics and logs.

    ``created_ms[i]`` is the event time of the order behind ``predictions[i]`` (epoch ms), for
    the end-to-end latency the engine measures once the broker has acknowledged.
    """

    predictions: list[OutRecord] = field(default_factory=list)
    dead_letters: list[OutRecord] = field(default_factory=list)
    created_ms: list[int] = field(default_factory=list)
    events_by_topic: Counter[str] = field(default_factory=Counter)
    dead_letters_by_topic: Counter[str] = field(default_factory=Counter)
    findings_by_rule: Counter[str] = field(default_factory=Counter)  # of the events kept
    orders: int = 0
    feature_stats: dict[str, int] = field(default_factory=dict)
    model_name: str = ""
    model_version: str = ""
    unexplained: str | None = None  # with ``explain``: why this batch's model gave no reasons


def _validated(record: SourceRecord, config: PipelineConfig, now_ms: int) -> WireEvent:
    value = record.value()
    if value is None:
        raise RejectedMessage("empty message: no value (a tombstone?)")
    event = decode_fast(value, config.max_message_bytes)  # contract.decode's answers, ~4x faster
    allowed = config.topic_types.get(record.topic() or "")
    if allowed is not None and event.type not in allowed:
        raise RejectedMessage(
            f"{event.type} does not belong on topic {record.topic()!r} "
            f"(it carries {', '.join(sorted(allowed))})",
            "type",
        )
    check_event_time(event, now_ms=now_ms, max_future_skew_s=config.max_future_skew_s)
    return event


def check_event_time(event: AnyEvent, *, now_ms: int, max_future_skew_s: int) -> None:
    """Reject an event stamped more than ``max_future_skew_s`` after ``now_ms`` (a clock far
    off, or a typo in the year); the HTTP API checks each order with it too.

    >>> from stream_features.contract import decode
    >>> at_noon = decode(b'{"type":"DasherEvent","dasher_id":"d1","market_id":"m1",'
    ...                  b'"kind":"assigned","at":"2026-01-01T12:00:00Z"}')
    >>> check_event_time(at_noon, now_ms=to_ms(at_noon.at) - 7200_000, max_future_skew_s=3600)
    Traceback (most recent call last):
    ...
    stream_features.errors.RejectedMessage: at: stamped 7200 s in the future, more than the ...
    """
    ahead_ms = to_ms(event_time(event)) - now_ms
    if ahead_ms > max_future_skew_s * 1000:
        raise RejectedMessage(
            f"stamped {ahead_ms / 1000:.0f} s in the future, more than the "
            f"{max_future_skew_s} s allowed (max_future_skew_s)",
            _TIME_FIELD.get(event.type, "at"),
        )


@dataclass
class DecodedBatch:
    """A batch after decoding: the valid events for the feature source, and the rejects.

    ``order_sources[i]`` is the record of the i-th OrderCreated among ``events`` (a prediction
    the model cannot make is dead-lettered with it). The events are ``wire_decode`` Structs.
    """

    result: BatchResult
    events: list[WireEvent]
    order_sources: list[SourceRecord]
    partitions: list[int] = field(default_factory=list)  # the source partition of events[i]


def decode_batch(
    records: Sequence[SourceRecord], *, now_ms: int, config: PipelineConfig
) -> DecodedBatch:
    """Decode and check every record on its own; a bad one becomes a dead letter."""
    result = BatchResult()
    events: list[WireEvent] = []
    order_sources: list[SourceRecord] = []
    partitions: list[int] = []
    for record in records:
        topic = record.topic() or ""
        result.events_by_topic[topic] += 1
        try:
            event = _validated(record, config, now_ms)
            found = screen(event, strict=config.contract_strict)
        except RejectedMessage as exc:
            result.dead_letters.append(
                dead_letter(record, exc.reason, exc.field, now_ms, config.max_dead_letter_bytes)
            )
            result.dead_letters_by_topic[topic] += 1
            continue
        if found:  # kept: counted by rule (a metric), never dropped
            result.findings_by_rule.update(f.rule for f in found)
        events.append(event)
        partitions.append(record.partition() or 0)
        if event.type == "OrderCreated":
            order_sources.append(record)
    return DecodedBatch(result, events, order_sources, partitions)


def score_batch(
    decoded: DecodedBatch,
    rows: FeatureRows | None,
    model: ScoringModel,
    *,
    now_ms: int,
    config: PipelineConfig,
) -> BatchResult:
    """Predict every order of the batch in one call to ``model`` and encode the predictions.

    ``rows`` is what the feature source returned for ``decoded.events`` (None when there were
    none to send).
    """
    result = decoded.result
    result.model_name, result.model_version = model.name, model.version
    order_sources = decoded.order_sources
    if rows is None:
        return result
    result.feature_stats = dict(rows.stats)
    result.orders = len(rows)
    if len(rows) != len(order_sources):
        raise RuntimeError(
            f"the feature source returned {len(rows)} rows for {len(order_sources)} orders"
        )
    if not len(rows):
        return result
    durations, bounds = predict_with_range(model, rows.values, with_range=config.with_range)
    if durations.shape[0] != len(rows):
        raise RuntimeError(f"model {model.name} returned {durations.shape[0]} for {len(rows)}")
    lows, highs = range_columns(bounds, len(rows))
    served_at = datetime.fromtimestamp(now_ms / 1000, UTC)
    features = _included_features(rows, config) if config.include_features else None
    reasons = None
    if config.explain:
        try:
            reasons = explanations(model, rows.values)
        except ExplainUnavailable as exc:  # the model's kind, not the order's fault: no reasons
            result.unexplained = exc.why
    values = answers(
        rows.orders,
        durations.tolist(),
        rows.freshness_s.tolist(),
        model_name=model.name,
        model_version=model.version,
        served_at=served_at,
        mode=STREAM_MODE,
        lows=lows,
        highs=highs,
        features=features,
        explanations=reasons,
    )
    predictions, created_ms = result.predictions, result.created_ms
    stamps = rows.created_ms or [to_ms(order.created_at) for order in rows.orders]
    for i, (order, value) in enumerate(zip(rows.orders, values, strict=True)):
        if value is None:
            result.dead_letters.append(
                dead_letter(
                    order_sources[i],
                    f"model {model.name} version {model.version} returned an unusable duration "
                    f"{durations[i].item()!r} s for this order",
                    None,
                    now_ms,
                    config.max_dead_letter_bytes,
                )
            )
            result.dead_letters_by_topic[order_sources[i].topic() or ""] += 1
            continue
        predictions.append(OutRecord(order.order_id.encode(), value))
        created_ms.append(stamps[i])
    return result


def _included_features(rows: FeatureRows, config: PipelineConfig) -> list[dict[str, float]]:
    """The model inputs each prediction carries: all of them, or ``config.feature_names``."""
    if not config.feature_names:
        return finite_features(rows.names, rows.values)
    columns = [rows.names.index(name) for name in config.feature_names]
    return finite_features(list(config.feature_names), rows.values[:, columns])


def process_batch(
    records: Sequence[SourceRecord],
    features: FeatureSource,
    model: ScoringModel,
    *,
    now_ms: int,
    config: PipelineConfig,
) -> BatchResult:
    """Decode, update and read features once, predict once, encode; see the module docstring.

    Raises whatever ``features.update_and_read`` raises (e.g. ``redis.RedisError``): the batch
    then produced nothing, and the engine retries it whole. Engines that overlap the feature
    round trip of one batch with the decoding of the next call the three steps themselves.
    """
    decoded = decode_batch(records, now_ms=now_ms, config=config)
    rows = features.update_and_read(decoded.events) if decoded.events else None
    return score_batch(decoded, rows, model, now_ms=now_ms, config=config)

"""What every decoder must do with any bytes: give a valid message or a printable reason.

One set of invariants, checked by the hypothesis properties and by the atheris target alike.
An ``AssertionError`` (or any other exception) escaping ``check`` is a finding. ``check_same``
holds the worker's fast decoder (``wire_decode.decode_fast``) to ``contract.decode``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from predictor.serving.dlq import decode_dead_letter
from predictor.serving.pipeline import PipelineConfig, decode_batch
from predictor.serving.records import RawRecord
from producers.tail import describe
from stream_features.contract import Event, decode, encode, event_id, event_time, to_ms
from stream_features.errors import RejectedMessage
from stream_features.quality import findings
from stream_features.wire_decode import WIRE_TYPES, AnyEvent, decode_fast

__all__ = ["MAX_BYTES", "NOW_MS", "check", "check_decode", "check_reason", "check_same"]

MAX_BYTES = 64 * 1024
"""A small limit, so the fuzzer also explores both sides of it."""
NOW_MS = to_ms(datetime(2026, 3, 1, 12, 30, tzinfo=UTC))
_CONFIG = PipelineConfig(
    max_message_bytes=MAX_BYTES,
    max_future_skew_s=3600,
    max_dead_letter_bytes=1_000_000,
    topic_types={
        "orders": frozenset({"OrderCreated"}),
        "dasher-events": frozenset({"DasherEvent", "MarketSupplySnapshot"}),
        "deliveries": frozenset({"OrderDelivered"}),
    },
)
_REASON_CHARS = 400
_FIELD_CHARS = 140


def check_reason(reason: str | None, field: str | None = None) -> None:
    """A reason says something, is safe on a terminal or in a log line, and is short."""
    assert reason, "a rejection without a reason"
    assert reason.isprintable(), f"control characters in the reason: {reason[:100]!r}"
    assert len(reason) <= _REASON_CHARS, f"a {len(reason)}-character reason"
    if field is not None:
        assert field.isprintable() and 0 < len(field) <= _FIELD_CHARS, repr(field[:100])


def check_decode(data: bytes, max_bytes: int = MAX_BYTES) -> Event | None:
    """``contract.decode``: a valid event that survives a round trip, or a clear rejection."""
    try:
        event = decode(data, max_bytes)
    except RejectedMessage as exc:
        check_reason(exc.reason, exc.field)
        if len(data) > max_bytes:
            assert "-byte limit" in exc.reason, "an oversized message was parsed"
        return None
    assert len(data) <= max_bytes
    when = event_time(event)
    assert when.utcoffset() == timedelta(0)
    assert 2000 <= when.year < 2100
    assert event_id(event)
    again = decode(encode(event))  # what we accept, we can write and read back unchanged
    assert again == event, (event, again)
    return event


def _answer(
    decoder: Callable[[Any, int], AnyEvent], data: Any, max_bytes: int
) -> AnyEvent | RejectedMessage:
    try:
        return decoder(data, max_bytes)
    except RejectedMessage as exc:
        return exc


def check_same(data: bytes | bytearray | memoryview | str, max_bytes: int = MAX_BYTES) -> str:
    """``decode_fast`` accepts exactly what ``decode`` accepts, as a Struct with the same field
    values of the same Python types, and rejects the rest with the same reason and field.

    Returns the event's type, or ``"rejected"`` (for tests that count what they covered).
    """
    slow, fast = _answer(decode, data, max_bytes), _answer(decode_fast, data, max_bytes)
    if isinstance(slow, RejectedMessage):
        assert isinstance(fast, RejectedMessage), (slow, fast)
        assert (fast.reason, fast.field) == (slow.reason, slow.field), (slow, fast)
        return "rejected"
    assert not isinstance(fast, RejectedMessage), (slow, fast)
    assert type(fast) is WIRE_TYPES[slow.type] and fast.type == slow.type
    for name in type(slow).model_fields:
        mine, theirs = getattr(fast, name), getattr(slow, name)
        assert mine == theirs and type(mine) is type(theirs), (name, mine, theirs)
        if isinstance(mine, datetime):
            assert mine.tzinfo is UTC and theirs.utcoffset() == timedelta(0), (mine, theirs)
    assert (event_id(fast), event_time(fast)) == (event_id(slow), event_time(slow))
    assert findings(fast) == findings(slow), (findings(fast), findings(slow))
    return slow.type


def _check_pipeline(data: bytes, topic: str) -> None:
    """The worker's path: one record becomes an event or a dead letter that keeps its bytes."""
    record = RawRecord(data, topic, 0, 7, b"key")
    decoded = decode_batch([record], now_ms=NOW_MS, config=_CONFIG)
    letters = decoded.result.dead_letters
    assert len(decoded.events) + len(letters) == 1
    if letters:
        letter = decode_dead_letter(letters[0].value)
        check_reason(letter.reason, letter.field)
        assert base64.b64decode(letter.value_b64) == data
        assert (letter.source_topic, letter.source_offset) == (topic, 7)


def _check_describe(data: bytes) -> None:
    """``eta tail``: a message to show or a reason, for any topic, never an exception."""
    message, reason = describe(data)
    assert (message is None) != (reason is None)
    if reason is not None:
        check_reason(reason)


def check(data: bytes) -> None:
    """Every decoder that reads a topic, on the same bytes."""
    check_decode(data)
    check_same(data)
    for topic in ("orders", "dasher-events", "deliveries"):
        _check_pipeline(data, topic)
    _check_describe(data)

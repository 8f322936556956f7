"""Dead letters: a rejected record, kept whole with where it came from and why.

Nothing rejected disappears: the original bytes travel base64 in a ``DeadLetter`` on the DLQ
topic, keyed as received. Only a record too large for the DLQ itself is cut, and the reason then
says so, with both sizes.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from predictor.serving.records import OutRecord, SourceRecord
from stream_features.contract import DeadLetter, encode

__all__ = ["dead_letter", "decode_dead_letter", "kept_bytes"]

_ENVELOPE_BYTES = 4096  # room for the reason, source and timestamps around the payload


def kept_bytes(size: int, max_dead_letter_bytes: int) -> int:
    """How many of ``size`` original bytes fit base64-encoded in one dead letter.

    >>> kept_bytes(100, 1_000_000)
    100
    >>> kept_bytes(10_000_000, 1_000_000)
    746928
    """
    room = max(max_dead_letter_bytes - _ENVELOPE_BYTES, 0) // 4 * 3
    return min(size, room)


def dead_letter(
    record: SourceRecord,
    reason: str,
    field: str | None,
    failed_at_ms: int,
    max_dead_letter_bytes: int = 10_000_000,
) -> OutRecord:
    """The DLQ record for ``record``: key as received, value an encoded ``DeadLetter``.

    >>> from predictor.serving.records import RawRecord
    >>> out = dead_letter(RawRecord(b"\\xff", "orders", 0, 9, b"s1"), "not JSON", None, 0)
    >>> out.key, decode_dead_letter(out.value).value_b64
    (b's1', '/w==')
    """
    raw = record.value() or b""
    keep = kept_bytes(len(raw), max_dead_letter_bytes)
    if keep < len(raw):
        reason = f"{reason} (original bytes cut to the first {keep} of {len(raw)})"
    key = record.key()
    letter = DeadLetter(
        source_topic=record.topic() or "",
        source_partition=record.partition(),
        source_offset=record.offset(),
        key=None if key is None else key.decode("utf-8", errors="replace"),
        value_b64=base64.b64encode(raw[:keep]).decode("ascii"),
        reason=reason,
        field=field,
        failed_at=datetime.fromtimestamp(failed_at_ms / 1000, UTC),
    )
    return OutRecord(key, encode(letter))


def decode_dead_letter(value: bytes) -> DeadLetter:
    """A DLQ record's value back as a ``DeadLetter`` (tools and tests read the DLQ with it)."""
    return DeadLetter.model_validate_json(value)

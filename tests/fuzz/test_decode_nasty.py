"""Hostile inputs, one by one, with the reason and field each must be rejected with.

The rules these pin down (docs/security.md):

- Size is checked before anything is parsed: 5 MB of anything is refused for its size.
- Nesting deeper than orjson's 1024 levels is refused by the parser, not by recursion.
- JSON has no NaN/Infinity; numbers too large for a double are refused, integers past 64 bits
  are refused by the field.
- A duplicate key is not an error: the last one wins (orjson, like Python's json, JavaScript's
  JSON.parse and Go's encoding/json). Every etastream consumer reads through ``decode``, so
  all of them see the same value.
- Booleans are never numbers; ``schema_version`` is exactly the integer 1.
- Timestamps carry a zone and fall within 2000..2100 once in UTC.
- Reasons quote the sender only through ``_shown``: printable and bounded.
"""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from stream_features.contract import OrderCreated, decode
from stream_features.errors import RejectedMessage
from tests.fuzz.oracle import check_reason
from tests.fuzz.samples import NASTY, VALID, with_fields

ORDER = VALID["orders"][0]


def rejected(raw: bytes | str, max_bytes: int = 1_000_000) -> RejectedMessage:
    with pytest.raises(RejectedMessage) as caught:
        decode(raw, max_bytes)
    check_reason(caught.value.reason, caught.value.field)
    return caught.value


EXPECTED: list[tuple[str, str, str | None]] = [
    ("empty", "not valid JSON", None),
    ("not-utf8", "not valid JSON", None),
    ("overlong-utf8", "not valid JSON", None),
    ("lone-surrogate", "no low surrogate", None),
    ("utf8-bom", "byte order mark", None),
    ("utf16", "not valid JSON", None),
    ("nul-after", "unexpected content after document", None),
    ("two-documents", "unexpected content after document", None),
    ("deep-arrays", "depth limit exceeded", None),
    ("deep-objects", "depth limit exceeded", None),
    ("deep-in-field", "Extra inputs are not permitted", "x"),
    ("huge-int", "number is infinity", None),
    ("u64-int", "less than or equal to 100000000", "subtotal"),
    ("nan", "not valid JSON", None),
    ("infinity", "not valid JSON", None),
    ("1e999", "number is infinity", None),
    ("duplicate-type", "Field required", "dasher_id"),
    ("schema-v2", "unknown schema_version 2", "schema_version"),
    ("schema-true", "unknown schema_version True", "schema_version"),
    ("schema-string", "unknown schema_version '1'", "schema_version"),
    ("no-zone", "timezone", "created_at"),
    ("year-1970", "outside 2000..2100", "created_at"),
    ("year-9999", "outside 2000..2100", "at"),
    ("year-0001", "outside 2000..2100", "delivered_at"),
    ("unknown-field", "Extra inputs are not permitted", "coupon"),
    ("unknown-type", "does not match any of the expected tags", "type"),
    ("wrong-type", "valid integer", "total_items"),
    ("bool-as-number", "no event field is a boolean", "total_items"),
    ("bool-as-coordinate", "no event field is a boolean", "store_lat"),
    ("negative-duration", "greater than or equal to 0", "estimated_order_place_duration_s"),
    ("empty-id", "at least 1 character", "order_id"),
    ("id-with-slash", "should match pattern", "order_id"),
    ("missing-field", "Field required", "at"),
    ("null-field", "valid string", "store_id"),
    ("escape-in-tag", "does not match any of the expected tags", "type"),
    ("escape-in-key", "Extra inputs are not permitted", None),
    ("empty-key", "no event field is a boolean", None),
    ("array", "expected a JSON object, got list", None),
    ("string", "expected a JSON object, got str", None),
    ("null", "expected a JSON object, got NoneType", None),
    ("garbage", "not valid JSON", None),
]


@pytest.mark.parametrize(("name", "reason", "field"), EXPECTED)
def test_each_nasty_input_is_rejected_with_its_reason(
    name: str, reason: str, field: str | None
) -> None:
    exc = rejected(NASTY[name])
    assert reason in exc.reason, exc.reason
    if field is not None:
        assert exc.field == field


def test_every_nasty_seed_has_an_expected_outcome_here() -> None:
    pinned = {name for name, _, _ in EXPECTED}
    assert set(NASTY) - pinned == {"duplicate-key"}  # the one that decodes, by rule


def test_a_field_with_an_empty_name_is_reported_as_no_field() -> None:
    assert rejected(NASTY["empty-key"]).field is None


def test_a_duplicate_key_takes_the_last_value() -> None:
    event = decode(NASTY["duplicate-key"])
    assert isinstance(event, OrderCreated)
    assert event.subtotal == 99


@pytest.mark.parametrize(
    "payload",
    [
        b'{"pad":"' + b"x" * 5_000_000 + b'"}',  # a 5 MB string
        b"[" * 5_000_000,  # would be a depth error if it were parsed
        b"\xff" * 5_000_000,  # would be a UTF-8 error if it were parsed
        orjson.dumps({**ORDER, "store_category": "p" * 5_000_000}),
    ],
    ids=["string", "nesting", "not-utf8", "in-a-field"],
)
def test_5_mb_of_anything_is_refused_for_its_size_before_parsing(payload: bytes) -> None:
    exc = rejected(payload)
    assert exc.reason == f"message of {len(payload)} bytes is over the 1000000-byte limit"
    assert exc.field is None


def test_100k_open_brackets_under_the_size_limit_stop_at_the_parser() -> None:
    exc = rejected(b"[" * 100_000)
    assert "depth limit exceeded" in exc.reason


def test_a_str_is_measured_in_utf8_bytes_not_characters() -> None:
    text = orjson.dumps({**ORDER, "store_category": "🍕" * 300_000}).decode()  # 1.2 MB, 300k chars
    assert len(text) < 1_000_000 < len(text.encode())
    assert "over the 1000000-byte limit" in rejected(text).reason


def test_a_memoryview_is_measured_in_bytes_not_items() -> None:
    import array

    view = memoryview(array.array("d", [0.0] * 200_000))  # 200k items, 1.6 MB
    assert "message of 1600000 bytes" in rejected(view).reason  # type: ignore[arg-type]  # a memoryview on purpose: decode must refuse any buffer that size


def test_reasons_quote_hostile_values_printably_and_briefly() -> None:
    tag = rejected(with_fields(ORDER, type="\x1b[2J\n" + "A" * 100_000))
    key = rejected(orjson.dumps({**ORDER, "\x1b]0;owned\x07" + "k" * 100_000: 1}))
    version = rejected(with_fields(ORDER, schema_version="v\n" * 100_000))

    assert tag.reason.startswith("Input tag '\\x1b[2J\\nAAA")
    assert "characters cut" in tag.reason and tag.reason.endswith("'OrderDelivered'")
    assert key.field is not None and key.field.startswith("\\x1b]0;owned\\x07k")
    assert "characters cut" in version.reason


def test_numbers_as_timestamps_are_read_as_epoch_seconds_or_milliseconds() -> None:
    """Lenient, and unambiguous within 2000..2100 (pydantic reads > 2e10 as milliseconds)."""
    seconds = decode(with_fields(ORDER, created_at=1_772_366_400))
    millis = decode(with_fields(ORDER, created_at=1_772_366_400_000))
    assert isinstance(seconds, OrderCreated) and isinstance(millis, OrderCreated)
    assert seconds.created_at == millis.created_at == datetime(2026, 3, 1, 12, tzinfo=UTC)
    assert "outside 2000..2100" in rejected(with_fields(ORDER, created_at=1)).reason

"""Poison of every kind goes to the DLQ with its reason; the good records around it are scored."""

from __future__ import annotations

import base64
from datetime import timedelta

import orjson
import pytest

from predictor.serving.dlq import decode_dead_letter, kept_bytes
from predictor.serving.pipeline import PipelineConfig, process_batch
from predictor.serving.records import RawRecord
from stream_features.contract import DeadLetter, DeliveryPrediction, encode
from tests.serving_fakes import (
    T0,
    LinearModel,
    MemoryFeatures,
    dasher_event,
    ms,
    order,
    order_bytes,
)

NOW = ms(T0) + 5_000
TOPIC_TYPES = {"orders": frozenset({"OrderCreated"})}
CONFIG = PipelineConfig(
    max_message_bytes=1_000_000, max_future_skew_s=3600, topic_types=TOPIC_TYPES
)


def with_fields(**over: object) -> bytes:
    data = orjson.loads(order_bytes(99))
    data.update(over)
    return orjson.dumps(data)


POISON: list[tuple[str, bytes | None, str, str | None]] = [
    ("garbage", b"\x00\x01garbage{{", "not valid JSON", None),
    ("non-utf8", b'{"type": "OrderCreated", "order_id": "\xff\xfe"}', "not valid JSON", None),
    ("json array", b"[1, 2, 3]", "expected a JSON object", None),
    ("tombstone", None, "empty message", None),
    ("wrong type", with_fields(total_items="many"), "valid integer", "total_items"),
    ("missing field", with_fields(store_id=None), "valid string", "store_id"),
    ("unknown type", with_fields(type="OrderCancelled"), "does not match", "type"),
    ("schema v2", with_fields(schema_version=2), "unknown schema_version 2", "schema_version"),
    (
        "year 1970",
        with_fields(created_at="1970-01-01T00:00Z"),
        "outside 2000..2100",
        "created_at",
    ),
    (
        "year 2150",
        with_fields(created_at="2150-01-01T00:00Z"),
        "outside 2000..2100",
        "created_at",
    ),
    (
        "two days ahead",
        encode(order(98, at=T0 + timedelta(days=2))),
        "in the future, more than the 3600 s allowed",
        "created_at",
    ),
    ("5 MB payload", b'{"pad": "' + b"x" * 5_000_000 + b'"}', "over the 1000000-byte limit", None),
    ("wrong topic", dasher_event(), "DasherEvent does not belong on topic 'orders'", "type"),
]


@pytest.fixture(scope="module")
def batch() -> tuple[list[RawRecord], list[DeliveryPrediction], list[DeadLetter]]:
    """Every poison with a good order on each side, in one batch."""
    values: list[bytes | None] = [order_bytes(0)]
    for i, (_, poison, _, _) in enumerate(POISON, start=1):
        values += [poison, order_bytes(i)]
    recs = [RawRecord(v, "orders", 3, 100 + i, f"k{i}".encode()) for i, v in enumerate(values)]
    result = process_batch(recs, MemoryFeatures(), LinearModel("4"), now_ms=NOW, config=CONFIG)
    preds = [DeliveryPrediction.model_validate_json(r.value) for r in result.predictions]
    letters: list[DeadLetter] = [decode_dead_letter(r.value) for r in result.dead_letters]
    assert result.dead_letters_by_topic == {"orders": len(POISON)}
    assert [r.key for r in result.dead_letters] == [
        f"k{2 * i + 1}".encode() for i in range(len(POISON))
    ]
    return recs, preds, letters


def test_the_good_orders_around_the_poison_are_all_predicted(
    batch: tuple[list[RawRecord], list[DeliveryPrediction], list[DeadLetter]],
) -> None:
    _, preds, _ = batch
    assert [p.order_id for p in preds] == [f"o{i}" for i in range(len(POISON) + 1)]
    assert {p.model_version for p in preds} == {"4"}


@pytest.mark.parametrize(("index", "case"), list(enumerate(POISON)), ids=[c[0] for c in POISON])
def test_each_poison_is_dead_lettered_with_its_reason(
    batch: tuple[list[RawRecord], list[DeliveryPrediction], list[DeadLetter]],
    index: int,
    case: tuple[str, bytes | None, str, str | None],
) -> None:
    recs, _, letters = batch
    _, poison, reason, field = case
    letter = letters[index]
    source = recs[2 * index + 1]
    assert letter.reason.find(reason) >= 0, letter.reason
    assert letter.field == field
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == (
        "orders",
        3,
        source.offset(),
    )
    assert base64.b64decode(letter.value_b64) == (poison or b"")
    assert letter.key == f"k{2 * index + 1}"


def test_a_record_too_big_for_the_dlq_is_cut_and_says_so() -> None:
    huge = b"x" * 3_000_000
    config = PipelineConfig(max_message_bytes=1_000_000, max_dead_letter_bytes=2_000_000)
    result = process_batch(
        [RawRecord(huge, "orders", 0, 1)],
        MemoryFeatures(),
        LinearModel(),
        now_ms=NOW,
        config=config,
    )
    (out,) = result.dead_letters
    letter = decode_dead_letter(out.value)
    keep = kept_bytes(len(huge), 2_000_000)
    assert len(out.value) <= 2_000_000
    assert base64.b64decode(letter.value_b64) == huge[:keep]
    assert f"cut to the first {keep} of 3000000" in letter.reason


def test_events_are_accepted_on_any_topic_not_listed() -> None:
    recs = [RawRecord(dasher_event(), "dashers", 0, 0)]
    result = process_batch(recs, MemoryFeatures(), LinearModel(), now_ms=NOW, config=CONFIG)
    assert result.dead_letters == [] and result.events_by_topic == {"dashers": 1}

"""Poison of every kind, interleaved with good orders on all three source topics.

Each poison record must reach the DLQ once, with its original bytes, where it came from and a
reason naming what is wrong; every good order must be predicted; the worker must stay up and
keep predicting what comes after (no crash loop), then stop cleanly.
"""

from __future__ import annotations

import base64
import signal
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from predictor.serving.dlq import decode_dead_letter
from stream_features.contract import encode
from stream_features.settings import Settings
from tests.integration.worker_helpers import (
    TopicReader,
    live_orders,
    produce,
    produce_orders,
)
from tests.reliability.readback import drain, expect_predicted
from tests.reliability.services import Spawn
from tests.reliability.tally import Row, tally
from tests.reliability.traffic import Record

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GOOD, AFTER, COPIES = 3000, 1000, 3


def _poison(settings: Settings) -> dict[str, tuple[str, bytes | None, str]]:
    """kind → (topic, value, what the DLQ reason must say)."""
    order = orjson.loads(encode(live_orders(1, "x")[0]))
    future = (datetime.now(UTC) + timedelta(days=3 * 365)).isoformat()

    def order_with(**fields: object) -> bytes:
        return orjson.dumps({**order, **fields})

    delivered = {"type": "OrderDelivered", "order_id": "x0", "store_id": "s1", "market_id": "m1"}
    at = datetime.now(UTC).isoformat()
    delivered_as_list = orjson.dumps({**delivered, "delivered_at": [2026, 11]})
    delivered_right = orjson.dumps({**delivered, "delivered_at": at})
    dasher = {"type": "DasherEvent", "dasher_id": "d1", "market_id": "m1", "kind": "assigned"}
    o, d, e = settings.orders_topic, settings.deliveries_topic, settings.dasher_events_topic
    return {
        "garbage": (o, b"\x00\x9f\x92\x96 not an event", "not valid JSON"),
        "garbage-deliveries": (d, b"<html>502 Bad Gateway</html>", "not valid JSON"),
        "garbage-dasher": (e, b"\xde\xad\xbe\xef", "not valid JSON"),
        "non-utf8": (o, b'{"type": "OrderCreated", "order_id": "\xff\xfe"}', "UTF-8"),
        "wrong-types": (o, order_with(total_items="three"), "integer"),
        "wrong-types-delivery": (d, delivered_as_list, "datetime"),
        "5mb": (o, order_with(store_category="x" * 5_000_000), "over the 1000000-byte limit"),
        "years-ahead": (o, order_with(created_at=future), "in the future"),
        "years-behind": (o, order_with(created_at="1990-01-01T00:00:00Z"), "outside 2000..2100"),
        "schema-version": (o, order_with(schema_version=9), "unknown schema_version 9"),
        "unknown-type": (o, order_with(type="OrderCancelled"), "does not match"),
        "wrong-topic": (o, orjson.dumps({**dasher, "at": at}), "does not belong on topic"),
        "wrong-topic-dasher": (e, delivered_right, "does not belong"),
        "not-an-object": (o, b"[1, 2, 3]", "expected a JSON object"),
        "empty": (o, b"", "empty"),
        "tombstone": (o, None, "empty message"),
    }


def test_poison(served: Settings, spawn: Spawn, row: Row) -> None:
    kinds = _poison(served)
    good = live_orders(GOOD, "g")
    poison: dict[bytes, tuple[str, bytes | None, str]] = {
        f"poison-{kind}-{n}".encode(): spec for kind, spec in kinds.items() for n in range(COPIES)
    }
    records: list[Record] = [(served.orders_topic, o.store_id.encode(), encode(o)) for o in good]
    every = len(records) // len(poison)
    for i, (key, (topic, value, _)) in enumerate(poison.items()):
        records.insert(i * (every + 1), (topic, key, value))
    assert len(records) == GOOD + len(poison)

    dlq = TopicReader(served, served.dlq_topic)
    predictions = TopicReader(served, served.predictions_topic)
    worker = spawn(served, "worker")
    produce(served, records)
    ids = {o.order_id.encode() for o in good}
    expect_predicted(predictions, ids, 60, [worker])
    assert worker.proc.poll() is None, "the worker died on poison"

    after = live_orders(AFTER, "after")  # still serving once the poison has gone through
    produce_orders(served, after)
    ids |= {o.order_id.encode() for o in after}
    expect_predicted(predictions, ids, 60, [worker])
    assert worker.stop(signal.SIGTERM) == 0

    counted = tally(ids, (m.key() for m in drain(served, predictions, served.predictions_topic)))
    letters = drain(served, dlq, served.dlq_topic)
    predictions.close()
    dlq.close()
    row.count(len(records) + AFTER, counted)
    row.notes["poison_sent"] = len(poison)
    row.notes["dead_letters"] = len(letters)
    assert counted.lost == 0 and counted.unexpected == 0
    assert sorted(m.key() or b"" for m in letters) == sorted(poison), "DLQ ≠ the poison sent"
    for message in letters:
        letter = decode_dead_letter(message.value() or b"")
        topic, value, reason = poison[message.key() or b""]
        assert reason in letter.reason, f"{message.key()!r}: {letter.reason!r}"
        assert letter.source_topic == topic and letter.source_offset is not None
        assert base64.b64decode(letter.value_b64) == (value or b"")

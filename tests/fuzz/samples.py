"""Valid messages of every topic and the hostile inputs the decoders must turn away.

Shared by the property tests, the atheris target and its corpus (``corpus/<topic>/``): the
corpus holds each of these as a file, and a test keeps the two in step.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import orjson

__all__ = [
    "CORPUS",
    "DECODED_TOPICS",
    "NASTY",
    "TOPICS",
    "VALID",
    "corpus_name",
    "seeds",
    "with_fields",
    "write_corpus",
]

CORPUS = Path(__file__).parent / "corpus"
DECODED_TOPICS = ("orders", "dasher-events", "deliveries")
"""The topics the stream worker consumes: every record goes through ``contract.decode``."""
TOPICS = (*DECODED_TOPICS, "delivery-eta-predictions", "orders.dlq")

_ORDER: dict[str, Any] = {
    "type": "OrderCreated",
    "schema_version": 1,
    "order_id": "o-1",
    "created_at": "2026-03-01T12:00:00Z",
    "market_id": "m1",
    "store_id": "s42",
    "store_category": "pizza",
    "order_protocol": 1,
    "total_items": 3,
    "subtotal": 2500,
    "num_distinct_items": 2,
    "min_item_price": 500,
    "max_item_price": 1500,
    "estimated_order_place_duration_s": 300,
    "estimated_store_to_consumer_driving_duration_s": 600,
    "store_lat": 37.77,
    "store_lon": -122.42,
    "consumer_lat": 37.76,
    "consumer_lon": -122.41,
}
_DASHER: dict[str, Any] = {
    "type": "DasherEvent",
    "dasher_id": "m1-d7",
    "market_id": "m1",
    "kind": "assigned",
    "at": "2026-03-01T12:00:01+00:00",
}
_SNAPSHOT: dict[str, Any] = {
    "type": "MarketSupplySnapshot",
    "market_id": "m1",
    "at": "2026-03-01T12:00:02Z",
    "onshift_dashers": 40,
    "busy_dashers": 31,
    "outstanding_orders": 55,
}
_DELIVERED: dict[str, Any] = {
    "type": "OrderDelivered",
    "order_id": "o-1",
    "store_id": "s42",
    "market_id": "m1",
    "delivered_at": "2026-03-01T12:41:00Z",
    "picked_up_at": "2026-03-01T12:20:00Z",
}
_PREDICTION: dict[str, Any] = {
    "type": "DeliveryPrediction",
    "schema_version": 1,
    "order_id": "o-1",
    "store_id": "s42",
    "market_id": "m1",
    "created_at": "2026-03-01T12:00:00Z",
    "predicted_duration_s": 2460.5,
    "predicted_delivery_at": "2026-03-01T12:41:00.500000Z",
    "model_name": "eta",
    "model_version": "3",
    "mode": "streaming",
    "served_at": "2026-03-01T12:00:00.020000Z",
    "feature_freshness_s": 1.5,
}
_DEAD_LETTER: dict[str, Any] = {
    "type": "DeadLetter",
    "schema_version": 1,
    "source_topic": "orders",
    "source_partition": 3,
    "source_offset": 1017,
    "key": "s42",
    "value_b64": base64.b64encode(b'{"type":"OrderCreated"}').decode(),
    "reason": "order_id: Field required (and 12 more)",
    "field": "order_id",
    "failed_at": "2026-03-01T12:00:00.005000Z",
}

VALID: dict[str, list[dict[str, Any]]] = {
    "orders": [_ORDER],
    "dasher-events": [_DASHER, _SNAPSHOT],
    "deliveries": [_DELIVERED],
    "delivery-eta-predictions": [_PREDICTION],
    "orders.dlq": [_DEAD_LETTER],
}
"""One valid message of each kind, by the topic it travels on."""


def with_fields(message: dict[str, Any], **over: Any) -> bytes:
    """``message`` with some fields replaced (``None`` drops one), as wire JSON."""
    data = {k: v for k, v in {**message, **over}.items() if v is not None}
    return orjson.dumps(data)


def _raw_order(tail: bytes) -> bytes:
    """The valid order with ``tail`` spliced in before its closing brace (for raw JSON)."""
    return orjson.dumps(_ORDER)[:-1] + b"," + tail + b"}"


NASTY: dict[str, bytes] = {
    "empty": b"",
    "not-utf8": b'{"type":"OrderCreated","order_id":"\xff\xfe"}',
    "overlong-utf8": b'{"type":"OrderCreated","order_id":"\xc0\xaf"}',
    "lone-surrogate": _raw_order(b'"store_category":"\\ud800"'),
    "utf8-bom": b"\xef\xbb\xbf" + orjson.dumps(_ORDER),
    "utf16": orjson.dumps(_ORDER).decode().encode("utf-16"),
    "nul-after": orjson.dumps(_ORDER) + b"\x00",
    "two-documents": orjson.dumps(_ORDER) * 2,
    "deep-arrays": b"[" * 2000,  # orjson stops at depth 1024
    "deep-objects": b'{"a":' * 1100,
    "deep-in-field": _raw_order(b'"x":' + b"[" * 1000 + b"]" * 1000),
    "huge-int": _raw_order(b'"subtotal":1' + b"0" * 400),
    "u64-int": with_fields(_ORDER, subtotal=2**64 - 1),
    "nan": _raw_order(b'"store_lat":NaN'),
    "infinity": _raw_order(b'"store_lon":-Infinity'),
    "1e999": _raw_order(b'"store_lat":1e999'),
    "duplicate-key": _raw_order(b'"subtotal":99'),
    "duplicate-type": _raw_order(b'"type":"DasherEvent"'),
    "schema-v2": with_fields(_ORDER, schema_version=2),
    "schema-true": with_fields(_ORDER, schema_version=True),
    "schema-string": with_fields(_ORDER, schema_version="1"),
    "no-zone": with_fields(_ORDER, created_at="2026-03-01T12:00:00"),
    "year-1970": with_fields(_ORDER, created_at="1970-01-01T00:00:00Z"),
    "year-9999": with_fields(_DASHER, at="9999-12-31T23:59:59-14:00"),
    "year-0001": with_fields(_DELIVERED, delivered_at="0001-01-01T00:00:00+14:00"),
    "unknown-field": with_fields(_ORDER, coupon="FREE"),
    "unknown-type": with_fields(_ORDER, type="OrderCancelled"),
    "wrong-type": with_fields(_ORDER, total_items="many"),
    "bool-as-number": with_fields(_ORDER, total_items=True),
    "bool-as-coordinate": with_fields(_ORDER, store_lat=False),
    "negative-duration": with_fields(_ORDER, estimated_order_place_duration_s=-60),
    "empty-id": with_fields(_ORDER, order_id=""),
    "id-with-slash": with_fields(_DELIVERED, order_id="../../x"),
    "missing-field": with_fields(_DASHER, at=None),
    "null-field": _raw_order(b'"store_id":null').replace(b'"store_id":"s42",', b""),
    "escape-in-tag": with_fields(_ORDER, type="x\n\x1b[2J" + "A" * 300),
    "escape-in-key": _raw_order(b'"\\u001b[31m\\n' + b"k" * 300 + b'":1'),
    "empty-key": orjson.dumps({**_ORDER, "": False}),  # found by the fuzzer: field "" not None
    "array": b"[1,2,3]",
    "string": b'"OrderCreated"',
    "null": b"null",
    "garbage": b"\x00\x01garbage{{",
}
"""Inputs every decoder must reject with a reason (or, for duplicate keys, decode by rule).

Kept under 8 KiB each so they fit the fuzzer's ``-max_len``; the 100k-deep and 5 MB cases are
in ``test_decode_nasty.py``, which builds them in memory.
"""


def corpus_name(data: bytes) -> str:
    """The file name a seed gets in the corpus: libFuzzer's own naming, the SHA-1 of the bytes.

    >>> corpus_name(b"")
    'da39a3ee5e6b4b0d3255bfef95601890afd80709'
    """
    return hashlib.sha1(data).hexdigest()


_NASTY_TOPIC = {
    "year-9999": "dasher-events",
    "missing-field": "dasher-events",
    "year-0001": "deliveries",
    "id-with-slash": "deliveries",
}


def seeds() -> dict[str, list[bytes]]:
    """The corpus by topic: the valid messages, then the nasty inputs aimed at that topic."""
    out = {topic: [orjson.dumps(m) for m in messages] for topic, messages in VALID.items()}
    for name, data in NASTY.items():
        out[_NASTY_TOPIC.get(name, "orders")].append(data)
    return out


def write_corpus(root: Path = CORPUS) -> int:
    """Write every seed under ``root/<topic>/`` (files the fuzzer found are left alone)."""
    count = 0
    for topic, datas in seeds().items():
        (root / topic).mkdir(parents=True, exist_ok=True)
        for data in datas:
            (root / topic / corpus_name(data)).write_bytes(data)
            count += 1
    return count


if __name__ == "__main__":
    print(f"{write_corpus()} seeds under {CORPUS}")

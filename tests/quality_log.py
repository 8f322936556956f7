"""An event log mixing every kind of rejection and every kind of data-quality finding.

Shared by the unit tests of the log report and the integration test of ``eta produce replay``:
``mixed_log`` returns the log's lines and what a reader must report of them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import orjson

from stream_features.quality import FINDING_RULES

__all__ = ["MixedLog", "mixed_log"]

_ORDER: dict[str, Any] = {
    "type": "OrderCreated",
    "order_id": "o-1",
    "created_at": "2026-03-01T12:00:00Z",
    "market_id": "m1",
    "store_id": "s1",
    "store_category": "pizza",
    "order_protocol": 1,
    "total_items": 3,
    "subtotal": 2500,
    "num_distinct_items": 2,
    "min_item_price": 500,
    "max_item_price": 1500,
    "estimated_order_place_duration_s": 300,
    "estimated_store_to_consumer_driving_duration_s": 600,
}
_SNAPSHOT: dict[str, Any] = {
    "type": "MarketSupplySnapshot",
    "market_id": "m1",
    "at": "2026-03-01T12:00:10Z",
    "onshift_dashers": 10,
    "busy_dashers": 4,
    "outstanding_orders": 3,
}
_DELIVERED: dict[str, Any] = {
    "type": "OrderDelivered",
    "order_id": "o-1",
    "store_id": "s1",
    "market_id": "m1",
    "delivered_at": "2026-03-01T12:40:00Z",
    "picked_up_at": "2026-03-01T12:20:00Z",
}

# a line that cannot be used -> the reason (as "field: reason") it is rejected with
_NO_ID = {k: v for k, v in _ORDER.items() if k != "order_id"}
_NO_TIME = {k: v for k, v in _ORDER.items() if k != "created_at"}
REJECTED: list[tuple[bytes, str]] = [
    (orjson.dumps(_NO_ID), "order_id: Field required"),
    (orjson.dumps(_NO_TIME), "created_at: Field required"),
    (orjson.dumps({**_ORDER, "store_id": None}), "store_id: Input should be a valid string"),
    (
        orjson.dumps({**_ORDER, "subtotal": "lots"}),
        "subtotal: Input should be a valid integer, unable to parse string as an integer",
    ),
    (
        orjson.dumps({**_ORDER, "subtotal": -5}),
        "subtotal: Input should be greater than or equal to 0",
    ),
    (
        orjson.dumps({**_ORDER, "total_items": True}),
        "total_items: true/false is not a valid value: no event field is a boolean",
    ),
    (
        orjson.dumps({**_SNAPSHOT, "type": "Nope"}),
        "type: Input tag 'Nope' found using 'type' does not match any of the expected tags: "
        "'OrderCreated', 'DasherEvent', 'MarketSupplySnapshot', 'OrderDelivered'",
    ),
    (
        orjson.dumps({**_SNAPSHOT, "schema_version": 2}),
        "schema_version: unknown schema_version 2; this build reads 1",
    ),
    (
        b'{"type": "OrderCreated", ',
        "not valid JSON: unexpected end of data: line 1 column 26 (char 25)",
    ),
    (b"[1, 2]", "expected a JSON object, got list"),
    (orjson.dumps({**_ORDER, "store_id": 7000.0}), "store_id: Input should be a valid string"),
    (
        orjson.dumps({**_ORDER, "created_at": "2026-03-01T12:00:00"}),
        "created_at: Input should have timezone info",
    ),
    (
        orjson.dumps({**_ORDER, "created_at": "1990-03-01T12:00:00Z"}),
        "created_at: Value error, timestamp 1990-03-01T12:00:00+00:00 is outside 2000..2100",
    ),
    (orjson.dumps({**_ORDER, "tip": 5}), "tip: Extra inputs are not permitted"),
    (
        orjson.dumps({**_ORDER, "store_category": "x" * 1_000_000}),
        "message of 1000338 bytes is over the 1000000-byte limit",  # decode's own limit
    ),
]
"""Every kind of rejection a log reader makes: docs/contract.md's table but for what only the
stream and the API check (ETA_MAX_MESSAGE_BYTES, ETA_MAX_FUTURE_SKEW_S, the topic)."""

# a usable line -> the rules it breaks
FINDINGS: list[tuple[dict[str, Any], list[str]]] = [
    ({**_ORDER, "store_category": None}, ["missing_attribute"]),
    ({k: v for k, v in _ORDER.items() if not k.endswith("_price")},
     ["missing_attribute", "missing_attribute"]),
    ({**_ORDER, "min_item_price": 1600}, ["min_price_above_max"]),
    ({**_ORDER, "num_distinct_items": 4}, ["distinct_above_total"]),
    ({**_ORDER, "max_item_price": 2600}, ["item_price_above_subtotal"]),
    ({**_ORDER, "estimated_order_place_duration_s": 0,
      "estimated_store_to_consumer_driving_duration_s": 0}, ["zero_estimate", "zero_estimate"]),
    ({**_SNAPSHOT, "busy_dashers": 11}, ["busy_above_onshift"]),
    ({**_DELIVERED, "picked_up_at": "2026-03-01T12:41:00Z"}, ["picked_up_after_delivered"]),
    ({**_ORDER, "order_id": 42, "store_id": 7000, "market_id": 1}, []),  # numeric ids: fine
]  # fmt: skip
assert {rule for _, rules in FINDINGS for rule in rules} == {r.name for r in FINDING_RULES}


@dataclass(frozen=True)
class MixedLog:
    """The lines of the log, and what reading it must find."""

    lines: list[bytes]
    by_reason: Counter[str]
    by_rule: Counter[str]
    rejected_line_nos: list[int]
    finding_line_nos: list[int]  # once per finding
    usable: int  # lines that decode: plausible or with findings


def mixed_log() -> MixedLog:
    """Good events, every rejection and every finding, interleaved (line numbers from 1)."""
    lines: list[bytes] = []
    by_reason: Counter[str] = Counter()
    by_rule: Counter[str] = Counter()
    rejected: list[int] = []
    found: list[int] = []
    usable = 0
    good = [orjson.dumps(m) for m in (_ORDER, _SNAPSHOT, _DELIVERED)]
    for i, (raw, reason) in enumerate(REJECTED):
        lines.append(good[i % 3])
        usable += 1
        lines.append(raw)
        rejected.append(len(lines))
        by_reason[reason] += 1
    lines.append(REJECTED[0][0])  # twice the same reason: counted twice
    rejected.append(len(lines))
    by_reason[REJECTED[0][1]] += 1
    for message, rules in FINDINGS:
        lines.append(orjson.dumps(message))
        usable += 1
        by_rule.update(rules)
        found.extend([len(lines)] * len(rules))
    return MixedLog(lines, by_reason, by_rule, rejected, found, usable)

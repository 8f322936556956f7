"""The contract's data-quality findings: an event that is usable but implausible.

A *rejection* (``contract.decode`` raising ``RejectedMessage``) means the event cannot be used:
no id or time, a value of the wrong type, money or a count out of range, an unknown type or
version. A *finding* means it can be used but something in it looks wrong: more busy dashers
than on-shift ones (the two counts are taken moments apart), an item priced above the
subtotal, an estimate of 0, an optional attribute missing. Real marketplace exports are full
of these; dropping them would cost real customers their ETA. So the event is kept, and each
finding is counted by rule: in the worker's and the API's Prometheus counters, in the replay
and training-set summaries, and line by line in their rejects file.

``FINDING_RULES`` is the one list every path reads (the stream worker, the HTTP API, the event
log reader); ``findings`` applies it to an event from either decoder (it dispatches on
``event.type`` and reads attributes, which the pydantic models and ``wire_decode``'s Structs
share). ``screen`` is what the paths call: the findings, or with ``strict`` (the setting
``ETA_CONTRACT_STRICT``) a ``RejectedMessage`` for the first one, the old behaviour.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from stream_features.errors import RejectedMessage

__all__ = [
    "FINDING_RULES",
    "OPTIONAL_ORDER_FIELDS",
    "Finding",
    "FindingRule",
    "findings",
    "screen",
    "strict_reason",
]


@dataclass(frozen=True, slots=True)
class Finding:
    """One rule an event breaks, the field it points at and what is wrong, in words."""

    rule: str
    field: str
    reason: str


@dataclass(frozen=True)
class FindingRule:
    """A data-quality rule of one event type: its name, the finding's text (``{field}``
    filled in) and what it means. Its test is one ``if`` in its type's checker below."""

    name: str
    event_type: str
    reason: str
    doc: str

    def finding(self, field: str) -> Finding:
        return Finding(self.name, field, self.reason.format(field=field))


FINDING_RULES: tuple[FindingRule, ...] = (
    FindingRule(
        "missing_attribute",
        "OrderCreated",
        "{field} is missing; the model reads it as missing",
        "An optional attribute (store category, order protocol, an item price, an estimate) "
        "is absent or null.",
    ),
    FindingRule(
        "min_price_above_max",
        "OrderCreated",
        "min_item_price must be <= max_item_price",
        "The cheapest item costs more than the dearest one.",
    ),
    FindingRule(
        "distinct_above_total",
        "OrderCreated",
        "num_distinct_items must be <= total_items",
        "More distinct items than items.",
    ),
    FindingRule(
        "item_price_above_subtotal",
        "OrderCreated",
        "max_item_price must be <= subtotal",
        "One item costs more than the whole basket (a discount taken off the subtotal?).",
    ),
    FindingRule(
        "zero_estimate",
        "OrderCreated",
        "{field} is 0",
        "An estimated duration (placing the order, driving to the consumer) of 0 seconds.",
    ),
    FindingRule(
        "busy_above_onshift",
        "MarketSupplySnapshot",
        "busy_dashers must be <= onshift_dashers",
        "More busy dashers than on-shift ones: the two counts were taken moments apart.",
    ),
    FindingRule(
        "picked_up_after_delivered",
        "OrderDelivered",
        "picked_up_at must be <= delivered_at",
        "The order was picked up after it was delivered.",
    ),
)
"""Every data-quality rule, in the order an event's findings are listed."""

OPTIONAL_ORDER_FIELDS = (
    "store_category",
    "order_protocol",
    "min_item_price",
    "max_item_price",
    "estimated_order_place_duration_s",
    "estimated_store_to_consumer_driving_duration_s",
)
"""The OrderCreated attributes a prediction can do without (``None`` when missing)."""
_ESTIMATES = ("estimated_order_place_duration_s", "estimated_store_to_consumer_driving_duration_s")

_RULE = {rule.name: rule for rule in FINDING_RULES}
_MISSING = [(name, _RULE["missing_attribute"].finding(name)) for name in OPTIONAL_ORDER_FIELDS]
_MIN_ABOVE_MAX = _RULE["min_price_above_max"].finding("min_item_price")
_DISTINCT_ABOVE_TOTAL = _RULE["distinct_above_total"].finding("num_distinct_items")
_ABOVE_SUBTOTAL = _RULE["item_price_above_subtotal"].finding("max_item_price")
_ZERO = [(name, _RULE["zero_estimate"].finding(name)) for name in _ESTIMATES]
_BUSY_ABOVE_ONSHIFT = _RULE["busy_above_onshift"].finding("busy_dashers")
_PICKED_AFTER = _RULE["picked_up_after_delivered"].finding("picked_up_at")
_order_values = attrgetter(*OPTIONAL_ORDER_FIELDS, "num_distinct_items", "total_items", "subtotal")


# One checker per event type, one ``if`` per rule, in FINDING_RULES' order: a plausible event
# (the usual case) costs one call and a few comparisons on the worker's hot path (0.25 us).
def _order(order: Any) -> list[Finding]:
    found: list[Finding] = []
    category, protocol, low, high, place, drive, distinct, total, subtotal = _order_values(order)
    if (
        category is None
        or protocol is None
        or low is None
        or high is None
        or place is None
        or drive is None
    ):  # the six of OPTIONAL_ORDER_FIELDS, unpacked above
        found += [f for name, f in _MISSING if getattr(order, name) is None]
    if low is not None and high is not None and low > high:
        found.append(_MIN_ABOVE_MAX)
    if distinct > total:
        found.append(_DISTINCT_ABOVE_TOTAL)
    if high is not None and high > subtotal:
        found.append(_ABOVE_SUBTOTAL)
    if place == 0 or drive == 0:
        found += [f for name, f in _ZERO if getattr(order, name) == 0]
    return found


def _snapshot(snapshot: Any) -> list[Finding]:
    return [_BUSY_ABOVE_ONSHIFT] if snapshot.busy_dashers > snapshot.onshift_dashers else []


def _delivered(delivered: Any) -> list[Finding]:
    picked = delivered.picked_up_at
    return [_PICKED_AFTER] if picked is not None and picked > delivered.delivered_at else []


def _none(event: Any) -> list[Finding]:
    return []


_CHECKERS: dict[str, Callable[[Any], list[Finding]]] = {
    "OrderCreated": _order,
    "MarketSupplySnapshot": _snapshot,
    "OrderDelivered": _delivered,
}


def findings(event: Any) -> list[Finding]:
    """The findings of an event from either decoder, in rule order; [] for a plausible one.

    >>> from stream_features.contract import decode
    >>> snapshot = decode(b'{"type":"MarketSupplySnapshot","market_id":1,'
    ...                   b'"at":"2026-01-01T12:00:00Z","onshift_dashers":3,'
    ...                   b'"busy_dashers":4,"outstanding_orders":0}')
    >>> [(f.rule, f.field) for f in findings(snapshot)]
    [('busy_above_onshift', 'busy_dashers')]
    """
    return _CHECKERS.get(event.type, _none)(event)


def strict_reason(finding: Finding) -> str:
    """The rejection reason a finding becomes under ``ETA_CONTRACT_STRICT``.

    >>> strict_reason(Finding("zero_estimate", "x", "x is 0"))
    'x is 0 (finding zero_estimate, rejected: ETA_CONTRACT_STRICT is set)'
    """
    return f"{finding.reason} (finding {finding.rule}, rejected: ETA_CONTRACT_STRICT is set)"


def screen(event: Any, *, strict: bool) -> list[Finding]:
    """The event's findings; with ``strict``, ``RejectedMessage`` for the first one instead."""
    found = _CHECKERS.get(event.type, _none)(event)  # findings(event), a frame less
    if found and strict:
        first = found[0]
        raise RejectedMessage(strict_reason(first), first.field)
    return found

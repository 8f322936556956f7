"""Predicted meets actual: the join of predictions and deliveries by order id.

Either side may arrive first. A prediction waits under its order id (one per model name, so a
challenger publishing to the same topic is joined too) until the delivery comes; a delivery is
kept until the TTL so that predictions arriving after it still join. Once a model's prediction
of an order is joined, a copy of it (an at-least-once redelivery) is counted as a duplicate and
never counted twice. ``JoinStore`` is the port: ``RedisJoin`` keeps this state in Redis with one
script call per batch (per hash slot on a Redis Cluster), ``MemoryJoin`` keeps it in a dict
for tests and tools.

Only what the monitor needs travels through the store, packed as a small JSON array. A shadow
record (``ShadowPrediction``: champion and challenger of one order) waits under the model name
``shadow:<name>`` (``shadow:<name>@online`` when the HTTP API served the order), so it joins the
delivery on its own, never counts as a served prediction, and an order served by both paths
keeps a pair of each.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import orjson

from stream_features.contract import (
    STREAM_MODE,
    DeliveryPrediction,
    OrderDelivered,
    ShadowPrediction,
    to_ms,
)

__all__ = [
    "SHADOW_PREFIX",
    "JoinOp",
    "JoinResult",
    "JoinStore",
    "Joined",
    "MemoryJoin",
    "PairedJoined",
    "delivery_op",
    "joined_from",
    "paired_from",
    "prediction_op",
    "shadow_op",
]

SHADOW_PREFIX = "shadow:"
"""The join's model name of a shadow record is this and the model's name."""
_PATH_MARK = "@"
"""Before the serving path in the join name of a shadow the stream did not serve (model names
never hold it: ``predictor.models.registry``)."""


@dataclass(frozen=True, slots=True)
class JoinOp:
    """One side of one order, in the order the batch brought it."""

    kind: Literal["P", "D"]
    order_id: str
    model_name: str
    payload: bytes


@dataclass
class JoinResult:
    pairs: list[tuple[str, str, bytes, bytes]] = field(default_factory=list)
    """(order id, model name, packed prediction, packed delivery) of each new match."""
    duplicates: int = 0


class JoinStore(Protocol):
    def join(self, ops: Sequence[JoinOp]) -> JoinResult:
        """Apply ``ops`` in order; the matches they made (one round trip for all of them)."""
        ...


@dataclass(frozen=True, slots=True)
class Joined:
    """A prediction with its outcome: the unit every error statistic is built from."""

    order_id: str
    model_name: str
    model_version: str
    market_id: str
    store_id: str
    created_ms: int
    served_ms: int
    delivered_ms: int
    predicted_s: float
    freshness_s: float
    """NaN when the prediction carried none."""
    features: dict[str, float] | None
    p10_s: float = math.nan
    """Lower end of the ETA range; NaN when the model had none (so had ``p90_s``)."""
    p90_s: float = math.nan

    @property
    def actual_s(self) -> float:
        return (self.delivered_ms - self.created_ms) / 1000

    @property
    def has_range(self) -> bool:
        return not math.isnan(self.p10_s)

    @property
    def error_s(self) -> float:
        """Predicted minus actual: positive when the ETA was too long."""
        return self.predicted_s - self.actual_s


@dataclass(frozen=True, slots=True)
class PairedJoined:
    """One shadow record with its delivery."""

    order_id: str
    model_name: str
    champion_version: str
    challenger_version: str
    challenger_stage: str
    market_id: str
    created_ms: int
    delivered_ms: int
    champion_s: float
    challenger_s: float
    mode: str = STREAM_MODE  # the path that served the order: the stream, or "online"

    @property
    def actual_s(self) -> float:
        return (self.delivered_ms - self.created_ms) / 1000


def prediction_op(p: DeliveryPrediction) -> JoinOp:
    packed = orjson.dumps(
        [
            p.model_version,
            p.market_id,
            p.store_id,
            to_ms(p.created_at),
            to_ms(p.served_at),
            p.predicted_duration_s,
            p.feature_freshness_s,
            p.features,
            p.predicted_duration_p10_s,
            p.predicted_duration_p90_s,
        ]
    )
    return JoinOp("P", p.order_id, p.model_name, packed)


def shadow_op(s: ShadowPrediction) -> JoinOp:
    packed = orjson.dumps(
        [
            s.champion_version,
            s.challenger_version,
            s.challenger_stage,
            s.market_id,
            to_ms(s.created_at),
            s.champion_predicted_duration_s,
            s.challenger_predicted_duration_s,
        ]
    )
    path = "" if s.mode == STREAM_MODE else _PATH_MARK + s.mode
    return JoinOp("P", s.order_id, SHADOW_PREFIX + s.model_name + path, packed)


def paired_from(order_id: str, model_name: str, shadow: bytes, delivery: bytes) -> PairedJoined:
    """A joined shadow record back from the packed sides (``model_name`` as the join keeps it).

    >>> s = orjson.dumps(["1", "2", "staging", "m1", 1000, 1800.0, 1400.0])
    >>> p = paired_from("o1", "shadow:eta", s, orjson.dumps([1_501_000]))
    >>> p.model_name, p.mode, p.actual_s, p.champion_s, p.challenger_s
    ('eta', 'streaming', 1500.0, 1800.0, 1400.0)
    >>> paired_from("o1", "shadow:eta@online", s, orjson.dumps([1_501_000])).mode
    'online'
    """
    champion, challenger, stage, market, created, champion_s, challenger_s = orjson.loads(shadow)
    (delivered,) = orjson.loads(delivery)
    name, _, mode = model_name.removeprefix(SHADOW_PREFIX).partition(_PATH_MARK)
    return PairedJoined(
        order_id=order_id,
        model_name=name,
        mode=mode or STREAM_MODE,
        champion_version=str(champion),
        challenger_version=str(challenger),
        challenger_stage=str(stage),
        market_id=str(market),
        created_ms=int(created),
        delivered_ms=int(delivered),
        champion_s=float(champion_s),
        challenger_s=float(challenger_s),
    )


def delivery_op(d: OrderDelivered) -> JoinOp:
    return JoinOp("D", d.order_id, "", orjson.dumps([to_ms(d.delivered_at)]))


def joined_from(order_id: str, model_name: str, prediction: bytes, delivery: bytes) -> Joined:
    """A match back from the packed sides.

    The range (the last two entries) may be missing: a prediction packed before the monitor
    carried ranges, still waiting in Redis across an upgrade, joins without one.

    >>> p = orjson.dumps(["3", "m1", "s1", 1000, 1200, 1800.0, None, None, 1200.0, 2400.0])
    >>> j = joined_from("o1", "eta", p, orjson.dumps([1_501_000]))
    >>> j.actual_s, j.error_s, math.isnan(j.freshness_s), (j.p10_s, j.p90_s)
    (1500.0, 300.0, True, (1200.0, 2400.0))
    >>> old = orjson.dumps(["3", "m1", "s1", 1000, 1200, 1800.0, None, None])
    >>> joined_from("o1", "eta", old, b"[1501000]").has_range
    False
    """
    fields = orjson.loads(prediction)
    version, market, store, created, served, predicted, fresh, features = fields[:8]
    low, high = (fields[8], fields[9]) if len(fields) >= 10 else (None, None)
    (delivered,) = orjson.loads(delivery)
    return Joined(
        order_id=order_id,
        model_name=model_name,
        model_version=str(version),
        market_id=str(market),
        store_id=str(store),
        created_ms=int(created),
        served_ms=int(served),
        delivered_ms=int(delivered),
        predicted_s=float(predicted),
        freshness_s=math.nan if fresh is None else float(fresh),
        features=features,
        p10_s=math.nan if low is None else float(low),
        p90_s=math.nan if high is None else float(high),
    )


class MemoryJoin:
    """The join in a dict, with the same rules as the Redis script (no expiry).

    >>> store = MemoryJoin()
    >>> d = JoinOp("D", "o1", "", b"[2000]")
    >>> store.join([d]).pairs, store.join([JoinOp("P", "o1", "eta", b"p")]).pairs
    ([], [('o1', 'eta', b'p', b'[2000]')])
    >>> store.join([JoinOp("P", "o1", "eta", b"p"), d]).duplicates
    2
    """

    def __init__(self) -> None:
        self.pending: dict[str, dict[str, bytes]] = {}
        self.delivered: dict[str, bytes] = {}
        self.joined: dict[str, set[str]] = {}

    def join(self, ops: Sequence[JoinOp]) -> JoinResult:
        result = JoinResult()
        for op in ops:
            done = self.joined.setdefault(op.order_id, set())
            if op.kind == "P":
                if op.model_name in done:
                    result.duplicates += 1
                elif op.order_id in self.delivered:
                    done.add(op.model_name)
                    self.pending.get(op.order_id, {}).pop(op.model_name, None)
                    delivery = self.delivered[op.order_id]
                    result.pairs.append((op.order_id, op.model_name, op.payload, delivery))
                else:
                    self.pending.setdefault(op.order_id, {})[op.model_name] = op.payload
            elif op.order_id in self.delivered:
                result.duplicates += 1
            else:
                self.delivered[op.order_id] = op.payload
                for model, payload in self.pending.pop(op.order_id, {}).items():
                    done.add(model)
                    result.pairs.append((op.order_id, model, payload, op.payload))
        return result

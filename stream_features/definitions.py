"""The feature registry: every model input declared once, read by every path.

The streaming path (``redis_windows``), the offline point-in-time replay (``point_in_time``),
the batch aggregates (``batch``) and the merge (``online``) are all driven by these entries, so
adding a feature is one entry here. Pure data: no I/O.

Window semantics, shared by every path: event time is cut into ``BUCKET_S`` buckets; a window of
``window_s`` read at time ``t`` is the sum of the ``window_s // BUCKET_S`` buckets ending with the
bucket that holds ``t``. An order's features are the state built from the events that arrived
before it (arrival order), so the order never counts itself.
"""

from __future__ import annotations

import hashlib
import json
import math
import zlib
from dataclasses import asdict, dataclass
from typing import Literal

__all__ = [
    "BATCH_FEATURES",
    "BUCKET_S",
    "FEATURES",
    "ORDER_FEATURES",
    "SIGNAL_UNITS",
    "STREAM_FEATURES",
    "BatchFeature",
    "OrderFeature",
    "StreamFeature",
    "bucket_start_ms",
    "category_code",
    "entity_of",
    "feature_names",
    "registry_hash",
]

BUCKET_S = 60
"""Width of the event-time buckets every streaming window is built from."""

SIGNAL_UNITS: dict[str, float] = {
    "created": 1.0,
    "delivered": 1.0,
    "duration_s": 1000.0,
    "outstanding": 1.0,
    "onshift": 1.0,
    "busy": 1.0,
}
"""Every per-event quantity the state keeps (``StreamFeature.signal``), with how many of its
stored units make one unit of a feature over it: ``duration_s`` is summed in milliseconds (the
event times' own unit, exact in integers) and read in seconds; the rest are counts."""

Entity = Literal["store_id", "market_id"]
StreamAgg = Literal["count", "sum", "mean", "last", "running", "ratio"]


@dataclass(frozen=True)
class StreamFeature:
    """A feature kept fresh from the event stream, in Redis, per entity.

    ``signal`` names the per-event quantity (each is in ``SIGNAL_UNITS``): ``created``
    (1 per OrderCreated), ``delivered``/``duration_s`` (per OrderDelivered joined to its order),
    ``outstanding`` (+1 created, -1 delivered), ``onshift``/``busy`` (snapshot value, adjusted by
    DasherEvents). ``ratio`` divides feature ``of[0]`` by ``of[1]``.
    """

    name: str
    entity: Entity
    agg: StreamAgg
    signal: str = ""
    window_s: int | None = None
    of: tuple[str, str] | None = None
    source: tuple[str, ...] = ()
    default: float = 0.0
    dtype: Literal["float", "int"] = "float"
    doc: str = ""


@dataclass(frozen=True)
class BatchFeature:
    """A historical aggregate over ``window_days`` of delivered orders, materialised per key.

    ``keys`` are the order attributes that address it (``hour_of_week`` and ``hour_of_day`` are
    derived from ``created_at`` in UTC). Where a key has no value, ``fallback`` names the feature
    whose value is used instead, then ``default``.
    """

    name: str
    keys: tuple[str, ...]
    agg: Literal["mean", "median", "p90", "count"]
    window_days: int = 28
    fallback: str | None = None
    default: float = 0.0
    dtype: Literal["float", "int"] = "float"
    doc: str = ""


@dataclass(frozen=True)
class OrderFeature:
    """A value the order carries itself (or derives from its own fields)."""

    name: str
    field: str
    dtype: Literal["float", "int", "category"] = "float"
    doc: str = ""


def _sf(
    name: str,
    entity: Entity,
    agg: StreamAgg,
    signal: str = "",
    window_m: int | None = None,
    **kw: object,
) -> StreamFeature:
    window = window_m * 60 if window_m is not None else None
    return StreamFeature(name=name, entity=entity, agg=agg, signal=signal, window_s=window, **kw)  # type: ignore[arg-type]  # **kw: StreamFeature's own optional fields


STREAM_FEATURES: tuple[StreamFeature, ...] = (
    _sf(
        "store__orders_created__10m",
        "store_id",
        "count",
        "created",
        10,
        source=("OrderCreated",),
        doc="Orders the store received in the last 10 minutes.",
    ),
    _sf(
        "store__orders_created__30m",
        "store_id",
        "count",
        "created",
        30,
        source=("OrderCreated",),
        doc="Orders the store received in the last 30 minutes.",
    ),
    _sf(
        "store__orders_created__60m",
        "store_id",
        "count",
        "created",
        60,
        source=("OrderCreated",),
        doc="Orders the store received in the last 60 minutes.",
    ),
    _sf(
        "store__outstanding_orders",
        "store_id",
        "running",
        "outstanding",
        source=("OrderCreated", "OrderDelivered"),
        doc="The store's orders created and not yet delivered.",
    ),
    _sf(
        "store__deliveries__60m",
        "store_id",
        "count",
        "delivered",
        60,
        source=("OrderDelivered",),
        doc="The store's orders delivered in the last 60 minutes.",
    ),
    _sf(
        "store__delivery_duration_mean__60m",
        "store_id",
        "mean",
        "duration_s",
        60,
        of=("duration_s", "delivered"),
        source=("OrderDelivered",),
        default=float("nan"),
        doc="Mean created→delivered seconds of the store's orders delivered in the last hour "
        "(NaN, which LightGBM treats as missing, when none were).",
    ),
    _sf(
        "market__orders_created__10m",
        "market_id",
        "count",
        "created",
        10,
        source=("OrderCreated",),
        doc="Orders in the market in the last 10 minutes.",
    ),
    _sf(
        "market__outstanding_orders",
        "market_id",
        "running",
        "outstanding",
        source=("OrderCreated", "OrderDelivered"),
        doc="The market's orders created and not yet delivered.",
    ),
    _sf(
        "market__onshift_dashers",
        "market_id",
        "last",
        "onshift",
        source=("MarketSupplySnapshot", "DasherEvent"),
        doc="Dashers on shift: the latest snapshot, moved by shift_start/shift_end since.",
    ),
    _sf(
        "market__busy_dashers",
        "market_id",
        "last",
        "busy",
        source=("MarketSupplySnapshot", "DasherEvent"),
        doc="Dashers on a delivery: the latest snapshot, moved by assigned/freed since.",
    ),
    _sf(
        "market__busy_ratio",
        "market_id",
        "ratio",
        of=("market__busy_dashers", "market__onshift_dashers"),
        default=float("nan"),
        doc="Busy over on-shift dashers (NaN with nobody on shift).",
    ),
    _sf(
        "market__outstanding_per_onshift",
        "market_id",
        "ratio",
        of=("market__outstanding_orders", "market__onshift_dashers"),
        default=float("nan"),
        doc="Outstanding orders per on-shift dasher: the market's backlog.",
    ),
)
_unknown = {  # a ratio's ``of`` names two features, a mean's two signals
    signal
    for f in STREAM_FEATURES
    if f.agg != "ratio"
    for signal in (f.signal, *(f.of or ()))
    if signal
} - SIGNAL_UNITS.keys()
assert not _unknown, f"signals without a unit in SIGNAL_UNITS: {sorted(_unknown)}"

BATCH_FEATURES: tuple[BatchFeature, ...] = (
    BatchFeature(
        "category__delivery_duration_mean__28d",
        ("store_category",),
        "mean",
        default=2700.0,
        doc="Fallback: mean duration in the store's category.",
    ),
    BatchFeature(
        "store__delivery_duration_mean__28d",
        ("store_id",),
        "mean",
        fallback="category__delivery_duration_mean__28d",
        doc="The store's mean created→delivered seconds over 28 days.",
    ),
    BatchFeature(
        "store__delivery_duration_median__28d",
        ("store_id",),
        "median",
        fallback="category__delivery_duration_mean__28d",
        doc="The store's median duration over 28 days.",
    ),
    BatchFeature(
        "store__delivery_duration_p90__28d",
        ("store_id",),
        "p90",
        fallback="category__delivery_duration_mean__28d",
        doc="The store's 90th-percentile duration over 28 days.",
    ),
    BatchFeature(
        "store__orders__28d",
        ("store_id",),
        "count",
        dtype="int",
        doc="Orders the store delivered over 28 days (0 for a new store).",
    ),
    BatchFeature(
        "store_how__delivery_duration_mean__28d",
        ("store_id", "hour_of_week"),
        "mean",
        fallback="store__delivery_duration_mean__28d",
        doc="The store's mean duration at this hour of the week.",
    ),
    BatchFeature(
        "market_hour__delivery_duration_mean__28d",
        ("market_id", "hour_of_day"),
        "mean",
        fallback="category__delivery_duration_mean__28d",
        doc="The market's mean duration at this hour of the day.",
    ),
)

ORDER_FEATURES: tuple[OrderFeature, ...] = (
    OrderFeature("order__total_items", "total_items"),
    OrderFeature("order__subtotal", "subtotal"),
    OrderFeature("order__num_distinct_items", "num_distinct_items"),
    OrderFeature("order__min_item_price", "min_item_price"),
    OrderFeature("order__max_item_price", "max_item_price"),
    OrderFeature("order__estimated_order_place_duration_s", "estimated_order_place_duration_s"),
    OrderFeature(
        "order__estimated_driving_duration_s", "estimated_store_to_consumer_driving_duration_s"
    ),
    OrderFeature("order__order_protocol", "order_protocol", "category"),
    OrderFeature(
        "order__store_category",
        "store_category",
        "category",
        doc="crc32 of the category name mod 1024 (stable across processes)",
    ),
    OrderFeature("order__hour_of_day", "created_at", "int", doc="UTC hour of created_at"),
    OrderFeature("order__day_of_week", "created_at", "int", doc="Monday=0, UTC"),
)

FEATURES: tuple[OrderFeature | StreamFeature | BatchFeature, ...] = (
    *ORDER_FEATURES,
    *STREAM_FEATURES,
    *BATCH_FEATURES,
)


def feature_names() -> list[str]:
    """The model's input columns, in order.

    >>> feature_names()[:2]
    ['order__total_items', 'order__subtotal']
    """
    return [f.name for f in FEATURES]


def entity_of(name: str) -> Entity | None:
    """The store or market whose state a feature describes; None for the order's own values.

    Within a short window one entity's value is one state watched over time, not a fresh draw
    per order, so a distribution of it holds as many independent values as there are entities
    (the monitor's PSI rule, ``docs/monitoring.md``).

    >>> entity_of("market__busy_ratio"), entity_of("store_how__delivery_duration_mean__28d")
    ('market_id', 'store_id')
    >>> entity_of("order__subtotal") is None
    True
    """
    for f in FEATURES:
        if f.name != name:
            continue
        if isinstance(f, StreamFeature):
            return f.entity
        if isinstance(f, BatchFeature) and "store_id" in f.keys:
            return "store_id"
        if isinstance(f, BatchFeature) and "market_id" in f.keys:
            return "market_id"
        return None
    return None


def registry_hash() -> str:
    """A fingerprint of every definition: a model trained under another one is refused."""
    payload = json.dumps(
        [type(f).__name__ for f in FEATURES] + [asdict(f) for f in FEATURES],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def bucket_start_ms(event_ts_ms: int, bucket_s: int = BUCKET_S) -> int:
    """Start of the tumbling bucket that holds ``event_ts_ms``.

    >>> bucket_start_ms(1_700_000_123_456, bucket_s=60)
    1700000100000
    """
    width_ms = bucket_s * 1000
    return event_ts_ms - event_ts_ms % width_ms


def category_code(value: str | None) -> float:
    """A stable integer code for a categorical string (LightGBM categorical input); a missing
    one (None) is NaN, which LightGBM reads as a missing category.

    >>> category_code("pizza") == category_code("pizza"), category_code(None)
    (True, nan)
    """
    if value is None:
        return math.nan
    return zlib.crc32(value.encode()) % 1024

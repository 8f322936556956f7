"""How the feature definitions map onto per-entity state, and how rows are finished.

Both implementations of the streaming semantics — Redis (``redis_windows``) and the in-memory
replay (``replay_state``) — keep the same state: per entity, event-time bucket counters per
signal, running counters and snapshot gauges. They read the same *raw columns* for each order
and hand them to ``finish_rows``, which derives means, ratios and defaults in one vectorised
place. That shared tail is what keeps the two paths identical.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter

import numpy as np
import numpy.typing as npt

from stream_features.definitions import (
    BATCH_FEATURES,
    BUCKET_S,
    ORDER_FEATURES,
    SIGNAL_UNITS,
    STREAM_FEATURES,
    BatchFeature,
    category_code,
    feature_names,
)
from stream_features.wire_decode import AnyOrder

__all__ = [
    "BATCH_FIELDS",
    "DASHER_DELTA",
    "RAW_READS",
    "SIGNAL_KEEP",
    "RawRead",
    "batch_lookup_keys",
    "finish_rows",
    "hour_of_week",
    "order_matrix",
]

ENTITY_PREFIX = {"store_id": "s", "market_id": "m"}

DASHER_DELTA: dict[str, tuple[str, int]] = {
    "shift_start": ("onshift", 1),
    "shift_end": ("onshift", -1),
    "assigned": ("busy", 1),
    "freed": ("busy", -1),
}
"""Which gauge a DasherEvent moves, and by how much: one table for both state backends."""


@dataclass(frozen=True)
class RawRead:
    """One integer read from an entity's state: a window sum of a signal, or a plain field."""

    entity: str  # "s" or "m"
    signal: str
    buckets: int  # 0: a running counter / gauge, not a window


def _raw_reads() -> tuple[RawRead, ...]:
    reads: list[RawRead] = []
    by_name = {f.name: f for f in STREAM_FEATURES}

    def add(read: RawRead) -> None:
        if read not in reads:
            reads.append(read)

    for feature in STREAM_FEATURES:
        entity = ENTITY_PREFIX[feature.entity]
        buckets = (feature.window_s or 0) // BUCKET_S
        if feature.agg in ("count", "sum", "running", "last"):
            add(RawRead(entity, feature.signal, buckets))
        elif feature.agg == "mean":
            assert feature.of is not None
            for signal in feature.of:
                add(RawRead(entity, signal, buckets))
        elif feature.agg == "ratio":
            assert feature.of is not None
            for name in feature.of:
                source = by_name[name]
                add(RawRead(entity, source.signal, (source.window_s or 0) // BUCKET_S))
    return tuple(sorted(reads, key=lambda r: r.entity != "s"))  # the store's reads first


RAW_READS = _raw_reads()
"""Every raw integer a row needs: the store's, then the market's (``replay_state.read_into``)."""


def _signal_keep() -> dict[tuple[str, str], int]:
    keep: dict[tuple[str, str], int] = {}
    for read in RAW_READS:
        if read.buckets:
            key = (read.entity, read.signal)
            keep[key] = max(keep.get(key, 0), read.buckets)
    return keep


SIGNAL_KEEP = _signal_keep()
"""Windowed signals per entity with the number of buckets their longest window spans."""

BATCH_FIELDS: tuple[str, ...] = tuple(f.name for f in BATCH_FEATURES)


def hour_of_week(created_ms: int) -> int:
    """Hour of the week in UTC, Monday 00:00 = 0.

    >>> hour_of_week(1767225600000)  # Thursday 2026-01-01 00:00 UTC
    72
    """
    days = created_ms // 86_400_000
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday
    return int(weekday * 24 + (created_ms // 3_600_000) % 24)


def batch_lookup_keys(feature: BatchFeature, order: AnyOrder, created_ms: int) -> str:
    """The key a batch feature is stored under for this order.

    >>> from stream_features.definitions import BATCH_FEATURES
    >>> f = next(f for f in BATCH_FEATURES if f.keys == ("market_id", "hour_of_day"))
    >>> batch_lookup_keys(f, None, 1767225600000 + 3 * 3_600_000)
    '|3'
    """
    parts: list[str] = []
    for key in feature.keys:
        if key == "hour_of_week":
            parts.append(str(hour_of_week(created_ms)))
        elif key == "hour_of_day":
            parts.append(str((created_ms // 3_600_000) % 24))
        else:  # a missing attribute (None) matches no stored key: "" is no id or category
            value = getattr(order, key) if order is not None else None
            parts.append("" if value is None else str(value))
    return "|".join(parts)


_DERIVED_ORDER = ("order__hour_of_day", "order__day_of_week", "order__store_category")
_PLAIN_ORDER = [j for j, f in enumerate(ORDER_FEATURES) if f.name not in _DERIVED_ORDER]
_plain_fields = attrgetter(*(ORDER_FEATURES[j].field for j in _PLAIN_ORDER))
_HOUR, _WEEKDAY, _CATEGORY = (
    [f.name for f in ORDER_FEATURES].index(name) for name in _DERIVED_ORDER
)


def order_matrix(
    orders: Sequence[AnyOrder], created_ms: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """The orders' own features, [n, len(ORDER_FEATURES)], a column at a time.

    The plain fields come out of each order in one C call and the derived ones are
    vectorised: a loop over the features per order cost the stream worker 2 us an order.
    """
    out = np.empty((len(orders), len(ORDER_FEATURES)), dtype=np.float64)
    if not len(orders):
        return out
    out[:, _PLAIN_ORDER] = np.array([_plain_fields(o) for o in orders], dtype=np.float64)
    codes = {c: category_code(c) for c in {o.store_category for o in orders}}
    out[:, _CATEGORY] = [codes[o.store_category] for o in orders]
    out[:, _HOUR] = (created_ms // 3_600_000) % 24
    out[:, _WEEKDAY] = (created_ms // 86_400_000 + 3) % 7
    return out


@dataclass(frozen=True)
class _Column:
    """How one streaming feature is derived from the raw reads (positions in ``RAW_READS``):
    ``num`` alone (a count, sum, gauge), or ``num / den / scale`` where ``den > 0``."""

    num: int
    den: int | None
    scale: float
    default: float


def _stream_plan() -> tuple[_Column, ...]:
    index = {read: j for j, read in enumerate(RAW_READS)}
    by_name = {f.name: f for f in STREAM_FEATURES}
    plan: list[_Column] = []
    for feature in STREAM_FEATURES:
        entity = ENTITY_PREFIX[feature.entity]

        def at(signal: str, window_s: int | None, entity: str = entity) -> int:
            return index[RawRead(entity, signal, (window_s or 0) // BUCKET_S)]

        if feature.agg in ("count", "sum", "running", "last"):
            plan.append(_Column(at(feature.signal, feature.window_s), None, 1.0, feature.default))
            continue
        assert feature.of is not None
        if feature.agg == "mean":
            num, den = at(feature.of[0], feature.window_s), at(feature.of[1], feature.window_s)
            scale = SIGNAL_UNITS[feature.of[0]]  # a duration is summed in ms, read in s
        else:  # ratio of two other features
            a, b = (by_name[name] for name in feature.of)
            num, den, scale = at(a.signal, a.window_s), at(b.signal, b.window_s), 1.0
        plan.append(_Column(num, den, scale, feature.default))
    return tuple(plan)


_STREAM_PLAN = _stream_plan()


def finish_rows(
    orders: Sequence[AnyOrder],
    created_ms: Sequence[int],
    raw: npt.NDArray[np.float64],
    batch: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """Model rows from raw state reads and raw batch lookups, with derived values and defaults.

    ``raw`` is [n, len(RAW_READS)] (NaN where an entity has no state: the feature's default is
    used), ``batch`` is [n, len(BATCH_FEATURES)] (NaN where the key had no value: its
    ``fallback`` feature's value is used, then its ``default``).
    """
    n = len(orders)
    names = feature_names()
    out = np.empty((n, len(names)), dtype=np.float64)
    width = len(ORDER_FEATURES)
    out[:, :width] = order_matrix(orders, np.asarray(created_ms, dtype=np.int64))
    col = width
    filled = np.nan_to_num(raw, nan=0.0)  # once, not per feature: it dominates a 1-row call
    missing = np.isnan(raw)
    for column in _STREAM_PLAN:
        if column.den is None:  # a plain read: its default where the entity has no state
            out[:, col] = np.where(missing[:, column.num], column.default, filled[:, column.num])
        else:
            num, den = filled[:, column.num], filled[:, column.den]
            values = np.full(n, column.default, dtype=np.float64)
            ok = den > 0
            values[ok] = num[ok] / den[ok] / column.scale
            out[:, col] = values
        col += 1
    resolved: dict[str, npt.NDArray[np.float64]] = {}
    for j, bfeature in enumerate(BATCH_FEATURES):  # fallbacks are declared before their users
        values = batch[:, j].copy()
        if bfeature.fallback is not None:
            fallback = resolved[bfeature.fallback]
            values = np.where(np.isnan(values), fallback, values)
        values = np.where(np.isnan(values), bfeature.default, values)
        resolved[bfeature.name] = values
        out[:, col] = values
        col += 1
    return out

"""The streaming rules: one partition's per-entity window state, applied event by event.

This is the one implementation of the window rules. The stream worker keeps one
``ReplayState`` per partition it owns (``redis_windows``), the point-in-time replay builds
training sets with one over the whole log, and the online read rebuilds entities from the
views the worker writes behind to Redis and reads them with the same ``read_row``.

Rules:
- An event carrying a store (OrderCreated, OrderDelivered) is judged at its store; market-only
  events (snapshots, dasher events) at their market. It is *late* when its time is more than
  ``lateness_s`` behind the newest event time that entity has applied: late events change
  nothing and are counted. A seen event id within the lateness horizon is a *duplicate*.
- OrderCreated: store and market ``created`` bucket +1, ``outstanding`` +1, order remembered.
- OrderDelivered of a remembered order: forgotten, ``outstanding`` -1 at store and market,
  store ``delivered`` bucket +1 and ``duration_s`` bucket + (delivered - created) ms.
- MarketSupplySnapshot at or after the last: sets ``onshift`` and ``busy``; DasherEvents newer
  than the last snapshot move them by one.
- When an entity's newest bucket crosses a multiple of ``PRUNE_EVERY``, its buckets older
  than its longest window plus the lateness, dedup ids older than the horizon and orders
  outstanding longer than ``max_outstanding_s`` (then no longer counted as outstanding) are
  dropped: memory follows active entities, not stream length.

A market's state can be split in *partials*, one per partition (each worker counts the store
events of its own partitions); a read sums the partials (``read_row``). With one partition
there is one partial and the rules above are exact.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import repeat

import numpy as np

from stream_features.contract import event_id, to_ms
from stream_features.definitions import BATCH_FEATURES, BUCKET_S, feature_names
from stream_features.layout import (
    DASHER_DELTA,
    RAW_READS,
    SIGNAL_KEEP,
    batch_lookup_keys,
    finish_rows,
)
from stream_features.vectors import FeatureRows
from stream_features.wire_decode import AnyEvent, AnyOrder

__all__ = [
    "BatchTable",
    "Changes",
    "EntityState",
    "ReplayState",
    "Series",
    "apply_and_read",
    "feature_rows",
    "read_row",
]

BUCKET_MS = BUCKET_S * 1000
PRUNE_EVERY = 10  # buckets between clean-ups of an entity: cheap, and bounds its memory
_NAN = float("nan")

BatchTable = dict[str, dict[str, float]]
"""Materialised batch features: feature name → lookup key → value."""

_STORE_READS = tuple((r.signal, r.buckets) for r in RAW_READS if r.entity == "s")
_MARKET_READS = tuple((r.signal, r.buckets) for r in RAW_READS if r.entity == "m")
assert RAW_READS[: len(_STORE_READS)] == tuple(r for r in RAW_READS if r.entity == "s")
_KEEP = {
    "s": {sig: k for (ent, sig), k in SIGNAL_KEEP.items() if ent == "s"},
    "m": {sig: k for (ent, sig), k in SIGNAL_KEEP.items() if ent == "m"},
}


class Series:
    """One signal's per-bucket totals: ``vals[i]`` is bucket ``base + i``.

    >>> s = Series(100)
    >>> s.add(102, 3); s.add(99, 1); s.window(102, 3)
    3
    >>> s.window(102, 4), s.base, s.vals
    (4, 99, [1, 0, 0, 3])
    """

    __slots__ = ("base", "vals")

    def __init__(self, base: int, vals: list[int] | None = None) -> None:
        self.base = base
        self.vals = vals if vals is not None else []

    def add(self, bucket: int, delta: int) -> None:
        vals = self.vals
        off = bucket - self.base
        if off < 0:  # an earlier bucket than any kept (a late event within the lateness)
            vals[0:0] = [0] * -off
            self.base = bucket
            off = 0
        elif off >= len(vals):
            vals.extend([0] * (off - len(vals) + 1))
        vals[off] += delta

    def window(self, bucket: int, buckets: int) -> int:
        """Sum of the ``buckets`` buckets ending with ``bucket``."""
        hi = bucket + 1 - self.base
        if hi <= 0:
            return 0
        lo = hi - buckets
        return sum(self.vals[lo if lo > 0 else 0 : hi])

    def prune(self, oldest: int) -> None:
        """Drop the buckets before ``oldest``."""
        cut = oldest - self.base
        if cut > 0:
            del self.vals[:cut]
            self.base = oldest


@dataclass
class EntityState:
    """One entity's state in one partition: what reads need (the *view*) and what dedup and
    deliveries need (``seen``, ``orders``)."""

    wm: int | None = None  # newest applied event time (ms)
    snap: int = -1  # time of the newest snapshot applied
    series: dict[str, Series] = field(default_factory=dict)  # windowed signals
    gauges: dict[str, int] = field(default_factory=dict)  # outstanding, onshift, busy
    seen: dict[str, int] = field(default_factory=dict)  # event id → event time (ms)
    orders: dict[str, int] = field(default_factory=dict)  # outstanding order id → created ms

    def add(self, name: str, delta: int) -> None:
        self.gauges[name] = self.gauges.get(name, 0) + delta

    def bump(self, signal: str, bucket: int, delta: int) -> None:
        series = self.series.get(signal)
        if series is None:
            series = self.series[signal] = Series(bucket)
        series.add(bucket, delta)


@dataclass
class Changes:
    """What a batch changed, for the write-behind (``redis_windows``): entity keys whose view
    changed, and dedup ids and outstanding orders added and dropped (``entity|id`` → time)."""

    views: set[str] = field(default_factory=set)
    seen_added: dict[str, int] = field(default_factory=dict)
    seen_dropped: list[str] = field(default_factory=list)
    orders_added: dict[str, int] = field(default_factory=dict)
    orders_dropped: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.views or self.seen_dropped or self.orders_dropped)


def read_row(
    stores: Sequence[EntityState], markets: Sequence[EntityState], ts: int
) -> tuple[list[float], float]:
    """Raw reads (``RAW_READS`` order) for an order at ``ts`` and its freshness, from the
    partials of its store and of its market (usually one each; summed when more).

    An entity none of whose partials has applied an event reads NaN (its features' defaults).
    """
    bucket = ts // BUCKET_MS
    s_wm = _newest(stores)
    m_wm = _newest(markets)
    values = _entity_reads(stores, s_wm, _STORE_READS, bucket)
    values += _entity_reads(markets, m_wm, _MARKET_READS, bucket)
    if s_wm is None or m_wm is None:
        return values, _NAN
    return values, max(ts - s_wm, ts - m_wm, 0) / 1000


def _entity_reads(
    parts: Sequence[EntityState],
    wm: int | None,
    reads: tuple[tuple[str, int], ...],
    bucket: int,
) -> list[float]:
    if wm is None:
        return [_NAN] * len(reads)
    if len(parts) == 1:  # the usual case, without the sums over partials
        series, gauges = parts[0].series, parts[0].gauges
        return [
            float(s.window(bucket, k) if (s := series.get(signal)) is not None else 0)
            if k
            else float(gauges.get(signal, 0))
            for signal, k in reads
        ]
    values: list[float] = []
    for signal, k in reads:
        total = 0
        for part in parts:
            if k:
                s = part.series.get(signal)
                total += s.window(bucket, k) if s is not None else 0
            else:
                total += part.gauges.get(signal, 0)
        values.append(float(total))
    return values


def feature_rows(
    orders: list[AnyOrder],
    raws: list[list[float]],
    fresh: list[float],
    batch: list[list[float]],
    created: list[int],
    stats: dict[str, int],
) -> FeatureRows:
    """A batch's raw reads and batch lookups finished into model rows (``finish_rows``);
    ``created[i]`` is ``orders[i]``'s creation time in ms."""
    width = (len(orders), len(RAW_READS))
    raw_arr = np.array(raws, dtype=np.float64).reshape(width)
    batch_arr = np.array(batch, dtype=np.float64).reshape(len(orders), len(BATCH_FEATURES))
    values = finish_rows(orders, created, raw_arr, batch_arr)
    return FeatureRows(feature_names(), values, np.array(fresh, dtype=np.float64), orders, stats)


BatchReads = tuple[list[AnyOrder], list[list[float]], list[float], list[list[float]], list[int]]
"""What ``apply_and_read`` gathers: the orders, their raw reads, freshness, batch lookups and
creation times (ms), in ``feature_rows``' argument order."""


def apply_and_read(events: Iterable[AnyEvent], states: Iterable[ReplayState]) -> BatchReads:
    """Apply each event to its state (``states`` runs beside ``events``: one state for a
    replay, the event's partition's for the worker), each order read just before its own
    event is applied, so a row sees everything that arrived before the order and nothing
    after. The one loop of every owner of a ``ReplayState``."""
    orders: list[AnyOrder] = []
    raws: list[list[float]] = []
    fresh: list[float] = []
    batch: list[list[float]] = []
    created: list[int] = []
    for event, state in zip(events, states, strict=False):  # ``states`` may be endless
        if event.type == "OrderCreated":
            ts = to_ms(event.created_at)
            raw, age = state.raw(event, ts)
            orders.append(event)
            raws.append(raw)
            fresh.append(age)
            batch.append(state.batch_values(event, ts))
            created.append(ts)
            state._apply_store_event(event, ts)
        else:
            state.apply(event)
    return orders, raws, fresh, batch, created


def _newest(parts: Sequence[EntityState]) -> int | None:
    if len(parts) == 1:
        return parts[0].wm
    marks = [p.wm for p in parts if p.wm is not None]
    return max(marks) if marks else None


class ReplayState:
    """Per-entity streaming state of one partition in memory, applied in arrival order.

    ``entities`` maps ``s:<store>`` and ``m:<market>`` to their state here. ``changes``, when
    set, collects what each event changed so the owner can write it behind; the replay that
    builds training sets leaves it unset. ``market_partials``, when set, gives the other
    partials of a market (other partitions) that a read adds to this one's.
    """

    def __init__(
        self,
        *,
        lateness_s: int = 300,
        max_outstanding_s: int = 6 * 3600,
        batch: BatchTable | None = None,
    ) -> None:
        self.lateness_ms = lateness_s * 1000
        self.max_outstanding_ms = max_outstanding_s * 1000
        self.entities: dict[str, EntityState] = {}
        self.batch: BatchTable = batch or {}
        self.stats = {"applied": 0, "duplicates": 0, "late": 0, "unmatched": 0}
        self.changes: Changes | None = None
        self.market_partials: dict[str, list[EntityState]] = {}
        self._batch_memo: dict[tuple[object, ...], list[float]] = {}

    # --- updates ------------------------------------------------------------------------------
    def _entity(self, key: str) -> EntityState:
        state = self.entities.get(key)
        if state is None:
            state = self.entities[key] = EntityState()
        return state

    def _admit(self, key: str, state: EntityState, eid: str, ts: int) -> bool:
        if state.wm is not None and ts < state.wm - self.lateness_ms:
            self.stats["late"] += 1
            return False
        if eid in state.seen:
            self.stats["duplicates"] += 1
            return False
        state.seen[eid] = ts
        self.stats["applied"] += 1
        if self.changes is not None:
            self.changes.seen_added[key + "|" + eid] = ts
        return True

    def _advance(
        self,
        key: str,
        state: EntityState,
        kind: str,
        ts: int,
        mkey: str = "",
        market: EntityState | None = None,
    ) -> None:
        changes = self.changes
        if changes is not None:
            changes.views.add(key)
        old = state.wm
        if old is not None and ts <= old:
            return
        state.wm = ts
        newest = ts // BUCKET_MS
        if old is not None and newest // PRUNE_EVERY == (old // BUCKET_MS) // PRUNE_EVERY:
            return
        lateness_buckets = self.lateness_ms // BUCKET_MS
        keep = _KEEP[kind]
        for signal, series in state.series.items():
            k = keep.get(signal)
            if k is not None:
                series.prune(newest - k - lateness_buckets)
        horizon = ts - self.lateness_ms
        old_ids = [e for e, t in state.seen.items() if t < horizon]
        for eid in old_ids:
            del state.seen[eid]
        stale = [o for o, created in state.orders.items() if created < ts - self.max_outstanding_ms]
        for order_id in stale:
            del state.orders[order_id]
            state.add("outstanding", -1)
            if market is not None:
                market.add("outstanding", -1)
        if changes is not None:
            changes.seen_dropped.extend(key + "|" + e for e in old_ids)
            changes.orders_dropped.extend(key + "|" + o for o in stale)
            if stale:
                changes.views.add(mkey)

    def apply(self, event: AnyEvent) -> None:
        kind = event.type
        if kind == "OrderCreated":
            self._apply_store_event(event, to_ms(event.created_at))  # type: ignore[union-attr]  # by type
        elif kind == "OrderDelivered":
            self._apply_store_event(event, to_ms(event.delivered_at))  # type: ignore[union-attr]  # by type
        else:
            self._apply_market_event(event)

    def _apply_store_event(self, event: AnyEvent, ts: int) -> None:
        """``event`` (an order created or delivered) at its event time ``ts`` (ms)."""
        skey, mkey = "s:" + event.store_id, "m:" + event.market_id  # type: ignore[union-attr]  # store events carry both
        store, market = self._entity(skey), self._entity(mkey)
        created_event = event.type == "OrderCreated"
        if not self._admit(skey, store, event_id(event), ts):
            return
        bucket = ts // BUCKET_MS
        order_id: str = event.order_id  # type: ignore[union-attr]  # store events carry it
        changes = self.changes
        if created_event:
            store.bump("created", bucket, 1)
            market.bump("created", bucket, 1)
            store.add("outstanding", 1)
            market.add("outstanding", 1)
            store.orders[order_id] = ts
            if changes is not None:
                changes.orders_added[skey + "|" + order_id] = ts
        else:
            created = store.orders.pop(order_id, None)
            if created is None:
                self.stats["unmatched"] += 1
            else:
                store.add("outstanding", -1)
                market.add("outstanding", -1)
                store.bump("delivered", bucket, 1)
                store.bump("duration_s", bucket, ts - created)
                if changes is not None:
                    ref = skey + "|" + order_id
                    if changes.orders_added.pop(ref, None) is None:
                        changes.orders_dropped.append(ref)
        self._advance(skey, store, "s", ts, mkey, market)
        self._advance(mkey, market, "m", ts)

    def _apply_market_event(self, event: AnyEvent) -> None:
        mkey = "m:" + event.market_id
        market = self._entity(mkey)
        ts = to_ms(event.at)  # type: ignore[union-attr]  # market events carry ``at``
        if not self._admit(mkey, market, event_id(event), ts):
            return
        if event.type == "MarketSupplySnapshot":
            if ts >= market.snap:
                market.snap = ts
                market.gauges["onshift"] = event.onshift_dashers
                market.gauges["busy"] = event.busy_dashers
        elif ts > market.snap:
            name, delta = DASHER_DELTA[event.kind]  # type: ignore[union-attr]  # a DasherEvent
            market.add(name, delta)
        self._advance(mkey, market, "m", ts)

    # --- reads --------------------------------------------------------------------------------
    def raw(self, order: AnyOrder, ts: int) -> tuple[list[float], float]:
        """Raw reads (``RAW_READS`` order) for an order at time ``ts`` and its freshness."""
        store = self.entities.get("s:" + order.store_id)
        mkey = "m:" + order.market_id
        market = self.entities.get(mkey)
        others = self.market_partials.get(mkey)
        stores = [store] if store is not None else []
        markets = [market] if market is not None else []
        if others:
            markets = markets + others
        return read_row(stores, markets, ts)

    def batch_at(self, ts: int) -> BatchTable:
        """The batch tables an order at ``ts`` sees (one set here; one per day in training)."""
        return self.batch

    def use_batch(self, tables: BatchTable) -> None:
        """Look batch features up in ``tables`` from now on (filled or replaced by the owner):
        the memo is dropped, since a new table may even reuse a freed one's ``id``."""
        self.batch = tables
        self._batch_memo.clear()

    def batch_values(self, order: AnyOrder, ts: int) -> list[float]:
        """The order's raw batch lookups (NaN where missing), memoised per table, store and
        hour: a store's orders within an hour share them, and the lookups cost 2 us an order."""
        tables = self.batch_at(ts)
        hour = ts // 3_600_000
        memo_key = (id(tables), order.store_id, order.market_id, order.store_category, hour)
        values = self._batch_memo.get(memo_key)
        if values is None:
            if len(self._batch_memo) > 100_000:
                self._batch_memo.clear()
            values = self._batch_memo[memo_key] = [
                tables.get(f.name, {}).get(batch_lookup_keys(f, order, ts), _NAN)
                for f in BATCH_FEATURES
            ]
        return values

    def update_and_read(self, events: Sequence[AnyEvent]) -> FeatureRows:
        before = dict(self.stats)
        rows = apply_and_read(events, repeat(self))
        stats = {key: self.stats[key] - before[key] for key in self.stats}
        return feature_rows(*rows, stats)

    def read(self, orders: Sequence[AnyOrder]) -> FeatureRows:
        raws, fresh, batch = [], [], []
        created = [to_ms(order.created_at) for order in orders]
        for order, ts in zip(orders, created, strict=True):
            raw, age = self.raw(order, ts)
            raws.append(raw)
            fresh.append(age)
            batch.append(self.batch_values(order, ts))
        zero = {key: 0 for key in self.stats}
        return feature_rows(list(orders), raws, fresh, batch, created, zero)

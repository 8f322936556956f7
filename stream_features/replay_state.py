"""The streaming rules: one partition's per-entity window state, applied event by event.

This is the one implementation of the window rules. The stream worker keeps one
``ReplayState`` per partition it owns (``redis_windows``), the point-in-time replay builds
training sets with one over the whole log, and the online read rebuilds entities from the
views the worker writes behind to Redis and reads them with the same ``read_into``.

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
events of its own partitions); a read sums the partials (``read_into``). With one partition
there is one partial and the rules above are exact.

The module is written in Cython's pure-Python mode: the same source runs as plain Python and,
compiled by ``pip install -e .`` (``setup.py``), as a C extension with typed state, which is
what makes the worker's per-event loop fast. ``stream_features.compiled`` says which one a
process runs, and a compiled module older than this source is not loaded.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import repeat

import cython
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
    "Reads",
    "ReplayState",
    "Series",
    "apply_and_read",
    "read_into",
    "read_orders",
]

BUCKET_MS = BUCKET_S * 1000
PRUNE_EVERY = 10  # buckets between clean-ups of an entity: cheap, and bounds its memory
_NAN = float("nan")
_NO_TIME = -(2**62)  # ``EntityState.wm`` of an entity that has applied nothing (None outside)
_NO_TABLE: dict[str, float] = {}  # a batch feature with no table loaded: every lookup misses

BatchTable = dict[str, dict[str, float]]
"""Materialised batch features: feature name → lookup key → value."""

_STORE_READS = tuple((r.signal, r.buckets) for r in RAW_READS if r.entity == "s")
_MARKET_READS = tuple((r.signal, r.buckets) for r in RAW_READS if r.entity == "m")
assert RAW_READS[: len(_STORE_READS)] == tuple(r for r in RAW_READS if r.entity == "s")
_KEEP = {
    "s": {sig: k for (ent, sig), k in SIGNAL_KEEP.items() if ent == "s"},
    "m": {sig: k for (ent, sig), k in SIGNAL_KEEP.items() if ent == "m"},
}


@cython.final
@cython.cclass
class Series:
    """One signal's per-bucket totals: ``vals[i]`` is bucket ``base + i``.

    >>> s = Series(100)
    >>> s.add(102, 3); s.add(99, 1); s.window(102, 3)
    3
    >>> s.window(102, 4), s.base, s.vals
    (4, 99, [1, 0, 0, 3])
    """

    base = cython.declare(cython.longlong, visibility="public")
    vals = cython.declare(list, visibility="public")

    def __init__(self, base: int, vals: list[int] | None = None) -> None:
        self.base = base
        self.vals = vals if vals is not None else []

    @cython.ccall
    def add(self, bucket: cython.longlong, delta: cython.longlong) -> None:
        vals = self.vals
        off: cython.Py_ssize_t = bucket - self.base
        if off < 0:  # an earlier bucket than any kept (a late event within the lateness)
            vals[0:0] = [0] * -off
            self.base = bucket
            off = 0
        elif off >= len(vals):
            vals.extend([0] * (off - len(vals) + 1))
        vals[off] += delta

    @cython.ccall
    def window(self, bucket: cython.longlong, buckets: cython.longlong) -> cython.longlong:
        """Sum of the ``buckets`` buckets ending with ``bucket``."""
        vals = self.vals
        hi: cython.Py_ssize_t = bucket + 1 - self.base
        if hi <= 0:
            return 0
        lo: cython.Py_ssize_t = hi - buckets
        if lo < 0:
            lo = 0
        if hi > len(vals):
            hi = len(vals)
        total: cython.longlong = 0
        value: cython.longlong
        i: cython.Py_ssize_t
        for i in range(lo, hi):
            value = vals[i]
            total += value
        return total

    @cython.ccall
    def prune(self, oldest: cython.longlong) -> None:
        """Drop the buckets before ``oldest``."""
        cut: cython.Py_ssize_t = oldest - self.base
        if cut > 0:
            del self.vals[:cut]
            self.base = oldest

    def __repr__(self) -> str:
        return f"Series({self.base}, {self.vals})"


@cython.final
@cython.cclass
class EntityState:
    """One entity's state in one partition: what reads need (the *view*) and what dedup and
    deliveries need (``seen``, ``orders``)."""

    _wm = cython.declare(cython.longlong)  # newest applied event time (ms), or _NO_TIME
    snap = cython.declare(cython.longlong, visibility="public")  # newest snapshot's time
    series = cython.declare(dict, visibility="public")  # windowed signals: name → Series
    gauges = cython.declare(dict, visibility="public")  # outstanding, onshift, busy
    seen = cython.declare(dict, visibility="public")  # event id → event time (ms)
    orders = cython.declare(dict, visibility="public")  # outstanding order id → created ms

    def __init__(
        self,
        wm: int | None = None,
        snap: int = -1,
        series: dict[str, Series] | None = None,
        gauges: dict[str, int] | None = None,
        seen: dict[str, int] | None = None,
        orders: dict[str, int] | None = None,
    ) -> None:
        self._wm = _NO_TIME if wm is None else wm
        self.snap = snap
        self.series = {} if series is None else series
        self.gauges = {} if gauges is None else gauges
        self.seen = {} if seen is None else seen
        self.orders = {} if orders is None else orders

    @property
    def wm(self) -> int | None:
        """The newest event time (ms) this entity has applied; None before its first."""
        return None if self._wm == _NO_TIME else self._wm

    @wm.setter
    def wm(self, value: int | None) -> None:
        self._wm = _NO_TIME if value is None else value

    @cython.ccall
    def add(self, name: str, delta: cython.longlong) -> None:
        gauges = self.gauges
        gauges[name] = gauges.get(name, 0) + delta

    @cython.ccall
    def bump(self, signal: str, bucket: cython.longlong, delta: cython.longlong) -> None:
        found = self.series.get(signal)
        series: Series
        if found is None:
            series = Series(bucket)
            self.series[signal] = series
        else:
            series = found
        series.add(bucket, delta)

    def __repr__(self) -> str:
        return (
            f"EntityState(wm={self.wm}, snap={self.snap}, series={self.series}, "
            f"gauges={self.gauges}, seen={len(self.seen)} ids, orders={len(self.orders)})"
        )


@cython.final
@cython.cclass
class Changes:
    """What a batch changed, for the write-behind (``redis_windows``): entity keys whose view
    changed, and dedup ids and outstanding orders added and dropped (``entity|id`` → time)."""

    views = cython.declare(set, visibility="public")
    seen_added = cython.declare(dict, visibility="public")
    seen_dropped = cython.declare(list, visibility="public")
    orders_added = cython.declare(dict, visibility="public")
    orders_dropped = cython.declare(list, visibility="public")

    def __init__(self) -> None:
        self.views = set()
        self.seen_added = {}
        self.seen_dropped = []
        self.orders_added = {}
        self.orders_dropped = []

    def __bool__(self) -> bool:
        return bool(self.views or self.seen_dropped or self.orders_dropped)


class Reads:
    """A batch's reads, written in place: ``raw[i]`` (``RAW_READS`` order), ``fresh[i]`` and
    ``batch[i]`` (``BATCH_FEATURES`` order) of the i-th order read. The engine writes C
    doubles straight into these arrays: a list of boxed floats per order, turned into an
    array afterwards, cost more than the reads themselves."""

    def __init__(self, capacity: int) -> None:
        self.raw = np.empty((capacity, len(RAW_READS)), dtype=np.float64)
        self.fresh = np.empty(capacity, dtype=np.float64)
        self.batch = np.empty((capacity, len(BATCH_FEATURES)), dtype=np.float64)
        self.orders: list[AnyOrder] = []
        self.created: list[int] = []

    def rows(self, stats: dict[str, int]) -> FeatureRows:
        """The reads finished into model rows (``finish_rows``)."""
        n = len(self.orders)
        values = finish_rows(self.orders, self.created, self.raw[:n], self.batch[:n])
        fresh = self.fresh[:n].copy()
        return FeatureRows(feature_names(), values, fresh, self.orders, stats, self.created)


@cython.ccall
def read_into(
    out: cython.double[:, :],
    row: cython.Py_ssize_t,
    stores: list[EntityState],
    markets: list[EntityState],
    ts: cython.longlong,
) -> cython.double:
    """Raw reads (``RAW_READS`` order) for an order at ``ts`` into ``out[row]``, from the
    partials of its store and of its market (usually one each; summed when more); returns
    its freshness in s.

    An entity none of whose partials has applied an event reads NaN (its features' defaults),
    and then the freshness is NaN too.
    """
    bucket: cython.longlong = ts // BUCKET_MS
    s_wm: cython.longlong = _newest(stores)
    m_wm: cython.longlong = _newest(markets)
    _entity_reads(out, row, 0, stores, s_wm, _STORE_READS, bucket)
    _entity_reads(out, row, len(_STORE_READS), markets, m_wm, _MARKET_READS, bucket)
    if s_wm == _NO_TIME or m_wm == _NO_TIME:
        return _NAN
    return max(ts - s_wm, ts - m_wm, 0) / 1000


@cython.cfunc
def _entity_reads(
    out: cython.double[:, :],
    row: cython.Py_ssize_t,
    col: cython.Py_ssize_t,
    parts: list[EntityState],
    wm: cython.longlong,
    reads: tuple[tuple[str, int], ...],
    bucket: cython.longlong,
) -> cython.void:
    """Write ``reads`` of an entity from column ``col``, summed over its ``parts`` (NaN
    when none has applied an event: ``wm`` is ``_NO_TIME``)."""
    j: cython.Py_ssize_t
    n: cython.Py_ssize_t = len(reads)
    if wm == _NO_TIME:
        for j in range(n):
            out[row, col + j] = _NAN
        return
    k: cython.longlong
    total: cython.longlong
    part: EntityState
    for j in range(n):
        signal, k = reads[j]
        total = 0
        for part in parts:
            total += _one_read(part, signal, k, bucket)
        out[row, col + j] = total


@cython.cfunc
@cython.inline
def _one_read(
    state: EntityState, signal: str, k: cython.longlong, bucket: cython.longlong
) -> cython.longlong:
    if not k:
        return state.gauges.get(signal, 0)
    found = state.series.get(signal)
    if found is None:
        return 0
    series: Series = found
    return series.window(bucket, k)


@cython.cfunc
def _newest(parts: list[EntityState]) -> cython.longlong:
    """The newest event time the partials have applied (``_NO_TIME`` when none has)."""
    newest: cython.longlong = _NO_TIME
    part: EntityState
    for part in parts:
        if part._wm > newest:
            newest = part._wm
    return newest


def apply_and_read(events: Sequence[AnyEvent], states: Iterable[ReplayState]) -> Reads:
    """Apply each event to its state (``states`` runs beside ``events``: one state for a
    replay, the event's partition's for the worker), each order read just before its own
    event is applied, so a row sees everything that arrived before the order and nothing
    after. The one loop of every owner of a ``ReplayState``."""
    reads = Reads(len(events))
    raw: cython.double[:, :] = reads.raw
    fresh: cython.double[:] = reads.fresh
    batch: cython.double[:, :] = reads.batch
    orders: list[AnyOrder] = reads.orders
    created: list[int] = reads.created
    n: cython.Py_ssize_t = 0
    state: ReplayState
    ts: cython.longlong
    for event, state in zip(events, states, strict=False):  # ``states`` may be endless
        if event.type == "OrderCreated":
            ts = to_ms(event.created_at)
            state.batch_into(batch, n, event, ts)
            fresh[n] = state._read_then_apply(event, ts, raw, n)
            orders.append(event)
            created.append(ts)
            n += 1
        else:
            state.apply(event)
    return reads


@cython.cclass
class ReplayState:
    """Per-entity streaming state of one partition in memory, applied in arrival order.

    ``entities`` maps ``s:<store>`` and ``m:<market>`` to their state here. ``changes``, when
    set, collects what each event changed so the owner can write it behind; the replay that
    builds training sets leaves it unset. ``market_partials``, when set, gives the other
    partials of a market (other partitions) that a read adds to this one's.
    """

    lateness_ms = cython.declare(cython.longlong, visibility="public")
    max_outstanding_ms = cython.declare(cython.longlong, visibility="public")
    entities = cython.declare(dict, visibility="public")
    batch = cython.declare(dict, visibility="public")
    changes = cython.declare(Changes, visibility="public")  # None between batches
    market_partials = cython.declare(dict, visibility="public")
    _batch_memo = cython.declare(dict)
    _applied = cython.declare(cython.longlong)
    _duplicates = cython.declare(cython.longlong)
    _late = cython.declare(cython.longlong)
    _unmatched = cython.declare(cython.longlong)

    def __init__(
        self,
        *,
        lateness_s: int = 300,
        max_outstanding_s: int = 6 * 3600,
        batch: BatchTable | None = None,
    ) -> None:
        self.lateness_ms = lateness_s * 1000
        self.max_outstanding_ms = max_outstanding_s * 1000
        self.entities = {}
        self.batch = batch or {}
        self._applied = self._duplicates = self._late = self._unmatched = 0
        self.changes = None
        self.market_partials = {}
        self._batch_memo = {}

    @property
    def stats(self) -> dict[str, int]:
        """Events applied, and refused as duplicates or late; deliveries of no known order."""
        return {
            "applied": self._applied,
            "duplicates": self._duplicates,
            "late": self._late,
            "unmatched": self._unmatched,
        }

    # --- updates ------------------------------------------------------------------------------
    @cython.cfunc
    def _entity(self, key: str) -> EntityState:
        found = self.entities.get(key)
        if found is not None:
            return found
        state = EntityState()
        self.entities[key] = state
        return state

    @cython.cfunc
    def _admit(self, key: str, state: EntityState, eid: str, ts: cython.longlong) -> cython.bint:
        if state._wm != _NO_TIME and ts < state._wm - self.lateness_ms:
            self._late += 1
            return False
        if eid in state.seen:
            self._duplicates += 1
            return False
        state.seen[eid] = ts
        self._applied += 1
        if self.changes is not None:
            changes: Changes = self.changes
            changes.seen_added[key + "|" + eid] = ts
        return True

    @cython.cfunc
    def _advance(
        self,
        key: str,
        state: EntityState,
        kind: str,
        ts: cython.longlong,
        mkey: str = "",
        market: EntityState | None = None,
    ) -> None:
        changes: Changes | None = self.changes
        if changes is not None:
            changes.views.add(key)
        old: cython.longlong = state._wm
        if old != _NO_TIME and ts <= old:
            return
        state._wm = ts
        newest: cython.longlong = ts // BUCKET_MS
        if old != _NO_TIME and newest // PRUNE_EVERY == (old // BUCKET_MS) // PRUNE_EVERY:
            return
        lateness_buckets: cython.longlong = self.lateness_ms // BUCKET_MS
        keep = _KEEP[kind]
        series: Series
        for signal, series in state.series.items():
            k = keep.get(signal)
            if k is not None:
                series.prune(newest - k - lateness_buckets)
        horizon = ts - self.lateness_ms
        old_ids = [e for e, t in state.seen.items() if t < horizon]
        for eid in old_ids:
            del state.seen[eid]
        oldest_kept = ts - self.max_outstanding_ms
        stale = [o for o, created in state.orders.items() if created < oldest_kept]
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

    @cython.ccall
    def apply(self, event: AnyEvent) -> None:
        kind = event.type
        if kind == "OrderCreated":
            self._apply_store_event(event, to_ms(event.created_at))  # type: ignore[union-attr]  # by type
        elif kind == "OrderDelivered":
            self._apply_store_event(event, to_ms(event.delivered_at))  # type: ignore[union-attr]  # by type
        else:
            self._apply_market_event(event)

    @cython.ccall
    def _apply_store_event(self, event: AnyEvent, ts: cython.longlong) -> None:
        """``event`` (an order created or delivered) at its event time ``ts`` (ms)."""
        skey: str = "s:" + event.store_id  # type: ignore[union-attr]  # store events carry it
        mkey: str = "m:" + event.market_id
        self._store_event(event, ts, skey, mkey, self._entity(skey), self._entity(mkey))

    @cython.cfunc
    def _read_then_apply(
        self,
        order: AnyOrder,
        ts: cython.longlong,
        out: cython.double[:, :],
        row: cython.Py_ssize_t,
    ) -> cython.double:
        """An order's reads into ``out[row]`` (as ``raw_into``: an entity created here has
        applied nothing, so it reads as a missing one), then the order applied, with its keys
        and entities found once; returns the freshness."""
        skey: str = "s:" + order.store_id
        mkey: str = "m:" + order.market_id
        store = self._entity(skey)
        market = self._entity(mkey)
        age: cython.double = read_into(out, row, [store], self._market_parts(mkey), ts)
        self._store_event(order, ts, skey, mkey, store, market)
        return age

    @cython.cfunc
    def _store_event(
        self,
        event: AnyEvent,
        ts: cython.longlong,
        skey: str,
        mkey: str,
        store: EntityState,
        market: EntityState,
    ) -> None:
        created_event = event.type == "OrderCreated"
        if not self._admit(skey, store, event_id(event), ts):
            return
        bucket: cython.longlong = ts // BUCKET_MS
        order_id: str = event.order_id  # type: ignore[union-attr]  # store events carry it
        changes: Changes | None = self.changes
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
                self._unmatched += 1
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

    @cython.cfunc
    def _apply_market_event(self, event: AnyEvent) -> None:
        mkey: str = "m:" + event.market_id
        market = self._entity(mkey)
        ts: cython.longlong = to_ms(event.at)  # type: ignore[union-attr]  # market events carry ``at``
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
    @cython.ccall
    def raw_into(
        self, out: cython.double[:, :], row: cython.Py_ssize_t, order: AnyOrder, ts: cython.longlong
    ) -> cython.double:
        """Raw reads for an order at time ``ts`` into ``out[row]``; returns its freshness."""
        mkey: str = "m:" + order.market_id
        store = self.entities.get("s:" + order.store_id)
        stores = [store] if store is not None else []
        return read_into(out, row, stores, self._market_parts(mkey), ts)

    @cython.cfunc
    def _market_parts(self, mkey: str) -> list[EntityState]:
        """The partials a read of market ``mkey`` sums: this partition's (when it has one)
        and the other partitions' the owner linked (``market_partials``)."""
        market = self.entities.get(mkey)
        parts: list[EntityState] = [market] if market is not None else []
        others = self.market_partials.get(mkey) if self.market_partials else None
        if others:
            parts += others
        return parts

    def batch_at(self, ts: int) -> BatchTable:
        """The batch tables an order at ``ts`` sees (one set here; one per day in training)."""
        return self.batch

    def use_batch(self, tables: BatchTable) -> None:
        """Look batch features up in ``tables`` from now on (filled or replaced by the owner):
        the memo is dropped, since a new table may even reuse a freed one's ``id``."""
        self.batch = tables
        self._batch_memo.clear()

    @cython.ccall
    def batch_into(
        self, out: cython.double[:, :], row: cython.Py_ssize_t, order: AnyOrder, ts: cython.longlong
    ) -> cython.void:
        """The order's raw batch lookups (NaN where missing) into ``out[row]``, memoised per
        table, store and hour: a store's orders within an hour share them, and the lookups
        cost 2 us an order."""
        tables = self.batch_at(ts)
        hour: cython.longlong = ts // 3_600_000
        memo_key = (id(tables), order.store_id, order.market_id, order.store_category, hour)
        values = self._batch_memo.get(memo_key)
        if values is None:
            if len(self._batch_memo) > 100_000:
                self._batch_memo.clear()
            values = self._batch_memo[memo_key] = tuple(
                [
                    tables.get(f.name, _NO_TABLE).get(batch_lookup_keys(f, order, ts), _NAN)
                    for f in BATCH_FEATURES
                ]
            )
        j: cython.Py_ssize_t
        known: tuple[float, ...] = values
        for j in range(len(known)):
            out[row, j] = known[j]

    def update_and_read(self, events: Sequence[AnyEvent]) -> FeatureRows:
        before = self.stats
        reads = apply_and_read(events, repeat(self))
        after = self.stats
        return reads.rows({key: after[key] - before[key] for key in after})

    def read(self, orders: Sequence[AnyOrder]) -> FeatureRows:
        return read_orders(self, orders).rows({key: 0 for key in self.stats})


def read_orders(
    state: ReplayState,
    orders: Sequence[AnyOrder],
    partials: dict[str, list[EntityState]] | None = None,
) -> Reads:
    """Reads for ``orders`` without applying anything: from ``state``'s entities, or from
    ``partials`` (entity key -> its partials, as the online read finds them in Redis), with
    ``state``'s batch tables either way."""
    reads = Reads(len(orders))
    for i, order in enumerate(orders):
        ts = to_ms(order.created_at)
        if partials is None:
            reads.fresh[i] = state.raw_into(reads.raw, i, order, ts)
        else:
            stores, markets = partials["s:" + order.store_id], partials["m:" + order.market_id]
            reads.fresh[i] = read_into(reads.raw, i, stores, markets, ts)
        state.batch_into(reads.batch, i, order, ts)
        reads.orders.append(order)
        reads.created.append(ts)
    return reads

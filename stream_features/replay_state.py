"""The streaming semantics in memory: the reference the Redis path must match.

``ReplayState`` applies events exactly as ``redis_windows.lua`` does — same lateness rule, same
dedup, same buckets, same pruning — so replaying a log through it gives, for every order, the
row the stream worker would have produced. It builds point-in-time training sets, and it is the
in-memory ``FeatureSource`` tests use in place of Redis.

Rules (mirrored line by line in the Lua script):
- An event carrying a store (OrderCreated, OrderDelivered) is judged at its store; market-only
  events (snapshots, dasher events) at their market. It is *late* when its time is more than
  ``lateness_s`` behind the newest event time that entity has applied: late events change
  nothing and are counted. A seen event id within the lateness horizon is a *duplicate*.
- OrderCreated: store and market ``created`` bucket +1, ``outstanding`` +1, order remembered.
- OrderDelivered of a remembered order: forgotten, ``outstanding`` -1 at store and market,
  store ``delivered`` bucket +1 and ``duration_s`` bucket + (delivered - created) ms.
- MarketSupplySnapshot newer than the last: sets ``onshift`` and ``busy``; DasherEvents newer
  than the last snapshot move them by one.
- When an entity's newest bucket crosses a multiple of ``PRUNE_EVERY``, its buckets older
  than its longest window plus the lateness, dedup ids older than the horizon and orders
  outstanding longer than ``max_outstanding_s`` (then no longer counted as outstanding) are
  dropped: memory follows active entities, not stream length.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from stream_features.contract import (
    DasherEvent,
    Event,
    MarketSupplySnapshot,
    OrderCreated,
    OrderDelivered,
    event_id,
    to_ms,
)
from stream_features.definitions import BATCH_FEATURES, BUCKET_S, feature_names
from stream_features.layout import (
    DASHER_DELTA,
    RAW_READS,
    SIGNAL_KEEP,
    batch_lookup_keys,
    finish_rows,
)
from stream_features.vectors import FeatureRows

__all__ = ["BatchTable", "EntityState", "ReplayState"]

BUCKET_MS = BUCKET_S * 1000
PRUNE_EVERY = 10  # buckets between clean-ups of an entity: cheap, and the same on both paths

BatchTable = dict[str, dict[str, float]]
"""Materialised batch features: feature name → lookup key → value."""


@dataclass
class EntityState:
    wm: int | None = None  # newest applied event time (ms)
    fields: dict[str, int] = field(default_factory=dict)  # "signal" or "signal:bucket" → value
    seen: dict[str, int] = field(default_factory=dict)  # event id → event time (ms)
    orders: dict[str, int] = field(default_factory=dict)  # outstanding order id → created ms
    snap: int = -1  # time of the newest snapshot applied

    def add(self, name: str, delta: int) -> None:
        self.fields[name] = self.fields.get(name, 0) + delta


class ReplayState:
    """Per-entity streaming state in memory, applied in arrival order."""

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

    # --- updates ------------------------------------------------------------------------------
    def _entity(self, key: str) -> EntityState:
        state = self.entities.get(key)
        if state is None:
            state = self.entities[key] = EntityState()
        return state

    def _admit(self, state: EntityState, eid: str, ts: int) -> bool:
        if state.wm is not None and ts < state.wm - self.lateness_ms:
            self.stats["late"] += 1
            return False
        if eid in state.seen:
            self.stats["duplicates"] += 1
            return False
        state.seen[eid] = ts
        self.stats["applied"] += 1
        return True

    def _advance(
        self, state: EntityState, kind: str, ts: int, market: EntityState | None = None
    ) -> None:
        old = state.wm
        if old is not None and ts <= old:
            return
        state.wm = ts
        newest = ts // BUCKET_MS
        if old is not None and newest // PRUNE_EVERY == (old // BUCKET_MS) // PRUNE_EVERY:
            return
        lateness_buckets = self.lateness_ms // BUCKET_MS
        for name in list(state.fields):
            signal, _, bucket = name.partition(":")
            keep = SIGNAL_KEEP.get((kind, signal))
            if bucket and keep is not None and int(bucket) < newest - keep - lateness_buckets:
                del state.fields[name]
        horizon = ts - self.lateness_ms
        state.seen = {e: t for e, t in state.seen.items() if t >= horizon}
        for order_id, created in list(state.orders.items()):
            if created < ts - self.max_outstanding_ms:
                del state.orders[order_id]
                state.add("outstanding", -1)
                if market is not None:
                    market.add("outstanding", -1)

    def apply(self, event: Event) -> None:
        if isinstance(event, OrderCreated | OrderDelivered):
            self._apply_store_event(event)
        else:
            self._apply_market_event(event)

    def _apply_store_event(self, event: OrderCreated | OrderDelivered) -> None:
        skey, mkey = "s:" + event.store_id, "m:" + event.market_id
        store, market = self._entity(skey), self._entity(mkey)
        ts = to_ms(event.created_at if isinstance(event, OrderCreated) else event.delivered_at)
        if not self._admit(store, event_id(event), ts):
            return
        bucket = ts // BUCKET_MS
        if isinstance(event, OrderCreated):
            store.add(f"created:{bucket}", 1)
            market.add(f"created:{bucket}", 1)
            store.add("outstanding", 1)
            market.add("outstanding", 1)
            store.orders[event.order_id] = ts
        else:
            created = store.orders.pop(event.order_id, None)
            if created is None:
                self.stats["unmatched"] += 1
            else:
                store.add("outstanding", -1)
                market.add("outstanding", -1)
                store.add(f"delivered:{bucket}", 1)
                store.add(f"duration_s:{bucket}", ts - created)
        self._advance(store, "s", ts, market)
        self._advance(market, "m", ts)

    def _apply_market_event(self, event: DasherEvent | MarketSupplySnapshot) -> None:
        mkey = "m:" + event.market_id
        market = self._entity(mkey)
        ts = to_ms(event.at)
        if not self._admit(market, event_id(event), ts):
            return
        if isinstance(event, MarketSupplySnapshot):
            if ts >= market.snap:
                market.snap = ts
                market.fields["onshift"] = event.onshift_dashers
                market.fields["busy"] = event.busy_dashers
        elif ts > market.snap:
            name, delta = DASHER_DELTA[event.kind]
            market.add(name, delta)
        self._advance(market, "m", ts)

    # --- reads --------------------------------------------------------------------------------
    def raw(self, order: OrderCreated, ts: int) -> tuple[list[float], float]:
        """Raw reads (``RAW_READS`` order) for an order at time ``ts`` and its freshness."""
        states = {
            "s": self.entities.get("s:" + order.store_id),
            "m": self.entities.get("m:" + order.market_id),
        }
        bucket = ts // BUCKET_MS
        values: list[float] = []
        for read in RAW_READS:
            state = states[read.entity]
            if state is None or state.wm is None:
                values.append(float("nan"))
            elif read.buckets:
                values.append(
                    float(
                        sum(
                            state.fields.get(f"{read.signal}:{b}", 0)
                            for b in range(bucket - read.buckets + 1, bucket + 1)
                        )
                    )
                )
            else:
                values.append(float(state.fields.get(read.signal, 0)))
        ages = [
            max(ts - s.wm, 0) / 1000 for s in states.values() if s is not None and s.wm is not None
        ]
        freshness = max(ages) if len(ages) == len(states) else float("nan")
        return values, freshness

    def batch_at(self, ts: int) -> BatchTable:
        """The batch tables an order at ``ts`` sees (one set here; one per day in training)."""
        return self.batch

    def batch_values(self, order: OrderCreated, ts: int) -> list[float]:
        tables = self.batch_at(ts)
        return [
            tables.get(f.name, {}).get(batch_lookup_keys(f, order, ts), float("nan"))
            for f in BATCH_FEATURES
        ]

    def _rows(
        self,
        orders: list[OrderCreated],
        raws: list[list[float]],
        fresh: list[float],
        batch: list[list[float]],
        before: dict[str, int],
    ) -> FeatureRows:
        created = [to_ms(o.created_at) for o in orders]
        width = (len(orders), len(RAW_READS))
        raw_arr = np.array(raws, dtype=np.float64).reshape(width)
        batch_arr = np.array(batch, dtype=np.float64).reshape(len(orders), len(BATCH_FEATURES))
        values = finish_rows(orders, created, raw_arr, batch_arr)
        stats = {key: self.stats[key] - before.get(key, 0) for key in self.stats}
        return FeatureRows(
            feature_names(), values, np.array(fresh, dtype=np.float64), orders, stats
        )

    def update_and_read(self, events: Sequence[Event]) -> FeatureRows:
        before = dict(self.stats)
        orders: list[OrderCreated] = []
        raws: list[list[float]] = []
        fresh: list[float] = []
        batch: list[list[float]] = []
        for event in events:
            if isinstance(event, OrderCreated):
                ts = to_ms(event.created_at)
                raw, age = self.raw(event, ts)
                orders.append(event)
                raws.append(raw)
                fresh.append(age)
                batch.append(self.batch_values(event, ts))
            self.apply(event)
        return self._rows(orders, raws, fresh, batch, before)

    def read(self, orders: Sequence[OrderCreated]) -> FeatureRows:
        raws, fresh, batch = [], [], []
        for order in orders:
            ts = to_ms(order.created_at)
            raw, age = self.raw(order, ts)
            raws.append(raw)
            fresh.append(age)
            batch.append(self.batch_values(order, ts))
        return self._rows(list(orders), raws, fresh, batch, self.stats)

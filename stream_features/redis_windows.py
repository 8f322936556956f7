"""The streaming path: window updates and row reads in Redis, one script call per batch.

The Lua script (``redis_windows.lua``) holds the rules; this module generates its tables from
the feature definitions, packs a batch of events into one ``EVALSHA`` and turns the flat reply
into ``FeatureRows`` through the same ``finish_rows`` the in-memory replay uses.

A call has three stages, ``prepare`` (pack the events), ``execute`` (the round trip) and
``finish`` (the reply to rows), so an engine can keep the round trip alone on its I/O thread:
Redis then waits for no Python between one batch's script and the next.

Keys (all under ``key_prefix``): ``s:<store>`` / ``m:<market>`` hashes of packed bucket totals
and gauges, ``e:<entity key>`` hashes of recently seen event ids (the dedup horizon),
``o:<store>`` hashes of outstanding orders, ``batch:current`` and ``b:<version>:…`` for batch
features (the script's header has the layout).
One script touches store and market keys together, so it needs a single Redis node (or a
cluster where every key of a batch hashes to one slot); see docs/features.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
import orjson
import redis

from stream_features.contract import (
    DasherEvent,
    Event,
    MarketSupplySnapshot,
    OrderCreated,
    OrderDelivered,
    event_id,
    to_ms,
)
from stream_features.definitions import BATCH_FEATURES, feature_names
from stream_features.layout import DASHER_DELTA, RAW_READS, SIGNAL_KEEP, finish_rows, hour_of_week
from stream_features.vectors import FeatureRows

__all__ = ["PreparedCall", "RedisFeatureSource", "script_source"]

_STATS = ("applied", "duplicates", "late", "unmatched")


def _lua_str(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def script_source() -> str:
    """The Lua script with its tables generated from the definitions."""
    reads = ", ".join(
        f"{{{_lua_str(r.entity)}, {_lua_str(r.signal)}, {r.buckets}}}" for r in RAW_READS
    )
    keep: dict[str, list[str]] = {"s": [], "m": []}
    for (entity, signal), buckets in SIGNAL_KEEP.items():
        keep[entity].append(f"[{_lua_str(signal)}] = {buckets}")
    groups: dict[str, list[tuple[int, str, str]]] = {}
    for position, f in enumerate(BATCH_FEATURES, 1):
        extra = f.keys[1] if len(f.keys) > 1 else ""
        groups.setdefault(f.keys[0], []).append((position, f.name, extra))
    batch_groups = ", ".join(
        f"{{{_lua_str(key)}, "
        f"{{{', '.join(f'{{{_lua_str(n)}, {_lua_str(x)}}}' for _, n, x in members)}}}, "
        f"{{{', '.join(str(p) for p, _, _ in members)}}}, "
        f"{{{', '.join(_lua_str(x) for x in sorted({x for _, _, x in members if x}))}}}}}"
        for key, members in groups.items()
    )
    body = resources.files("stream_features").joinpath("redis_windows.lua").read_text()
    return (
        f"local READS = {{{reads}}}\n"
        f"local KEEP = {{s = {{{', '.join(keep['s'])}}}, m = {{{', '.join(keep['m'])}}}}}\n"
        f"local N_BATCH = {len(BATCH_FEATURES)}\n"
        f"local BATCH_GROUPS = {{{batch_groups}}}\n" + body
    )


@dataclass(frozen=True)
class PreparedCall:
    """One batch packed for the script: its arguments, and the orders whose rows come back."""

    args: list[str | int | bytes]
    orders: list[OrderCreated]


def _pack(event: Event) -> list[str | int]:
    if isinstance(event, OrderCreated):
        ts = to_ms(event.created_at)
        return [
            "C",
            event_id(event),
            ts,
            event.store_id,
            event.market_id,
            event.order_id,
            event.store_category,
            hour_of_week(ts),
            (ts // 3_600_000) % 24,
        ]
    if isinstance(event, OrderDelivered):
        return [
            "D",
            event_id(event),
            to_ms(event.delivered_at),
            event.store_id,
            event.market_id,
            event.order_id,
            "",
            "",
            "",
        ]
    if isinstance(event, MarketSupplySnapshot):
        return [
            "S",
            event_id(event),
            to_ms(event.at),
            "",
            event.market_id,
            "",
            event.onshift_dashers,
            event.busy_dashers,
            "",
        ]
    assert isinstance(event, DasherEvent)
    signal, delta = DASHER_DELTA[event.kind]
    return ["E", event_id(event), to_ms(event.at), "", event.market_id, signal, delta, "", ""]


class RedisFeatureSource:
    """``FeatureSource`` backed by Redis: what every stream worker and API process shares."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        key_prefix: str = "",
        lateness_s: int = 300,
        dedup_ttl_s: int = 2 * 86400,
        entity_ttl_s: int = 7 * 86400,
        max_outstanding_s: int = 6 * 3600,
    ) -> None:
        self._client = client
        self._prefix = key_prefix
        self._lateness_ms = lateness_s * 1000
        self._max_out_ms = max_outstanding_s * 1000
        self._ttl_ms = max(entity_ttl_s, dedup_ttl_s) * 1000
        self._script = client.register_script(script_source())
        self._names = feature_names()

    def update_and_read(self, events: Sequence[Event]) -> FeatureRows:
        prepared = self.prepare(events)
        return self.finish(prepared, self.execute(prepared))

    def read(self, orders: Sequence[OrderCreated]) -> FeatureRows:
        """Rows without updating: the same script, with every event id already seen."""
        prepared = self.prepare(orders, read_only=True)
        return self.finish(prepared, self.execute(prepared))

    def prepare(self, events: Sequence[Event], read_only: bool = False) -> PreparedCall:
        """The script's arguments for ``events`` (no I/O): the events go as one JSON array."""
        packed: list[str | int] = []
        for event in events:
            packed.extend(_pack(event))
        args: list[str | int | bytes] = [
            self._prefix,
            self._lateness_ms,
            self._max_out_ms,
            self._ttl_ms,
            len(events),
            int(read_only),
            orjson.dumps(packed),
        ]
        return PreparedCall(args, [e for e in events if isinstance(e, OrderCreated)])

    def execute(self, prepared: PreparedCall) -> Any:
        """The one round trip: the script applied to the prepared batch, its raw reply."""
        return self._script(args=prepared.args)

    def finish(self, prepared: PreparedCall, reply: Any) -> FeatureRows:
        """The script's reply to rows (no I/O)."""
        orders = prepared.orders
        n_raw, n_batch = len(RAW_READS), len(BATCH_FEATURES)
        width = n_raw + 2 + n_batch
        body = reply[: len(orders) * width]
        table = np.array(
            [np.nan if v is None else float(v) for v in body], dtype=np.float64
        ).reshape(len(orders), width)
        created = np.array([to_ms(o.created_at) for o in orders], dtype=np.float64)
        ages = np.maximum(created[:, None] - table[:, n_raw : n_raw + 2], 0.0) / 1000.0
        freshness = ages.max(axis=1) if len(orders) else np.empty(0)
        values = finish_rows(
            orders, created.astype(np.int64).tolist(), table[:, :n_raw], table[:, n_raw + 2 :]
        )
        stats = dict(zip(_STATS, (int(v) for v in reply[len(orders) * width :]), strict=True))
        return FeatureRows(self._names, values, freshness, orders, stats)

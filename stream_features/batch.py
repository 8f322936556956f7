"""The batch path: historical aggregates per key, materialised to Redis and Parquet.

Aggregates are computed with Polars from delivered orders (an Arrow-compatible frame of
``created_at``, ``delivered_at``, keys and ``duration_s``), only from outcomes known before
``as_of``: the same function builds the tables the stream reads and, day by day, the ones the
point-in-time training set joins. Redis gets each materialisation under a new version and a
single ``SET batch:current`` makes it visible, so a reader never sees half a set.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
import redis

from stream_features.contract import OrderCreated, OrderDelivered, to_ms
from stream_features.definitions import BATCH_FEATURES, BatchFeature

__all__ = [
    "BatchTables",
    "compute_batch_tables",
    "deliveries_frame",
    "materialise_parquet",
    "materialise_redis",
    "tables_as_dict",
]

BatchTables = dict[str, pl.DataFrame]
"""Feature name → frame with columns ``key`` (the lookup key string) and ``value``."""

_KEEP_VERSIONS = 2  # the current one and the one a reader may still be on


def deliveries_frame(orders: list[OrderCreated], deliveries: list[OrderDelivered]) -> pl.DataFrame:
    """Delivered orders with their duration: the input of every batch aggregate."""
    created = pl.DataFrame(
        {
            "order_id": [o.order_id for o in orders],
            "store_id": [o.store_id for o in orders],
            "market_id": [o.market_id for o in orders],
            "store_category": [o.store_category for o in orders],
            "created_ms": [to_ms(o.created_at) for o in orders],
        },
        schema={
            "order_id": pl.String,
            "store_id": pl.String,
            "market_id": pl.String,
            "store_category": pl.String,
            "created_ms": pl.Int64,
        },
    ).unique("order_id", keep="first")
    done = pl.DataFrame(
        {
            "order_id": [d.order_id for d in deliveries],
            "delivered_ms": [to_ms(d.delivered_at) for d in deliveries],
        },
        schema={"order_id": pl.String, "delivered_ms": pl.Int64},
    ).unique("order_id", keep="first")
    return (
        created.join(done, on="order_id", how="inner")
        .with_columns(duration_s=(pl.col("delivered_ms") - pl.col("created_ms")) / 1000.0)
        .filter(pl.col("duration_s") >= 0)
        .with_columns(
            hour_of_day=((pl.col("created_ms") // 3_600_000) % 24).cast(pl.Int64),
            hour_of_week=(
                ((pl.col("created_ms") // 86_400_000 + 3) % 7) * 24
                + (pl.col("created_ms") // 3_600_000) % 24
            ).cast(pl.Int64),
        )
    )


def _aggregate(feature: BatchFeature) -> pl.Expr:
    duration = pl.col("duration_s")
    if feature.agg == "mean":
        return duration.mean()
    if feature.agg == "median":
        return duration.median()
    if feature.agg == "p90":
        return duration.quantile(0.9, interpolation="linear")
    return duration.count().cast(pl.Float64)


def compute_batch_tables(delivered: pl.DataFrame, as_of: datetime) -> BatchTables:
    """Every batch feature from the orders delivered in its window before ``as_of``."""
    as_of_ms = to_ms(as_of)
    tables: BatchTables = {}
    for feature in BATCH_FEATURES:
        since = to_ms(as_of - timedelta(days=feature.window_days))
        window = delivered.filter(
            (pl.col("delivered_ms") < as_of_ms) & (pl.col("delivered_ms") >= since)
        )
        # a missing key part (no store_category) makes the key null: no group, so an order
        # without a category finds no category value and takes the feature's default
        key = pl.concat_str([pl.col(k).cast(pl.String) for k in feature.keys], separator="|")
        tables[feature.name] = (
            window.filter(key.is_not_null())
            .group_by(key.alias("key"))
            .agg(_aggregate(feature).cast(pl.Float64).alias("value"))
            .sort("key")
        )
    return tables


def tables_as_dict(tables: BatchTables) -> dict[str, dict[str, float]]:
    """The in-memory form ``ReplayState`` looks features up in."""
    return {
        name: dict(zip(frame["key"].to_list(), frame["value"].to_list(), strict=True))
        for name, frame in tables.items()
    }


def materialise_redis(
    client: redis.Redis, tables: BatchTables, version: str, key_prefix: str = ""
) -> int:
    """Write a new version, then switch ``batch:current`` to it in one SET; returns keys written.

    Layout read by ``redis_windows.lua``: hash ``b:<version>:<first key name>:<first key
    value>``, field ``<feature>`` or ``<feature>|<rest of the key>``.
    """
    by_feature = {f.name: f for f in BATCH_FEATURES}
    hashes: dict[str, dict[str, float]] = {}
    for name, frame in tables.items():
        first = by_feature[name].keys[0]
        for key, value in zip(frame["key"].to_list(), frame["value"].to_list(), strict=True):
            head, _, rest = key.partition("|")
            field = f"{name}|{rest}" if rest else name
            hashes.setdefault(f"{key_prefix}b:{version}:{first}:{head}", {})[field] = value
    pipe = client.pipeline(transaction=False)
    for i, (key, mapping) in enumerate(hashes.items(), 1):
        pipe.hset(key, mapping={k: repr(float(v)) for k, v in mapping.items()})
        if i % 2000 == 0:
            pipe.execute()
    pipe.sadd(f"{key_prefix}batch:keys:{version}", *hashes) if hashes else None
    pipe.execute()
    client.set(f"{key_prefix}batch:current", version)
    client.rpush(f"{key_prefix}batch:versions", version)
    _drop_old_versions(client, key_prefix)
    return len(hashes)


def _drop_old_versions(client: redis.Redis, key_prefix: str) -> None:
    versions = [
        v.decode() if isinstance(v, bytes) else str(v)
        for v in client.lrange(f"{key_prefix}batch:versions", 0, -1)
    ]
    for old in versions[:-_KEEP_VERSIONS]:
        members = client.smembers(f"{key_prefix}batch:keys:{old}")
        if members:
            client.delete(*members)
        client.delete(f"{key_prefix}batch:keys:{old}")
        client.lrem(f"{key_prefix}batch:versions", 1, old)


def materialise_parquet(tables: BatchTables, out_dir: Path, version: str) -> Path:
    """The offline store: one Parquet file per feature under ``out_dir/<version>/``."""
    target = out_dir / version
    target.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        frame.write_parquet(target / f"{name}.parquet")
    return target

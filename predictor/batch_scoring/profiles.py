"""Store profiles: which stores are active, and the typical order each batch ETA is for.

A batch ETA answers "how long if I order now" for a store, but an ETA needs an order: its
basket (items, prices), protocol and the estimated place and drive times. The profile is the
store's *median order* over its recent history — each numeric field's median over the store's
orders created in the ``days`` before ``as_of`` (the batch features' 28-day window), rounded to
an integer; ``order_protocol`` is the most common one (the smaller on a tie); ``market_id`` and
``store_category`` are the latest seen. Medians keep the contract's own constraints
(min price <= max price, distinct items <= items) since each is monotone in its inputs.
Missing attributes (the contract's optional ones) are left out of each median and of the
latest category; a store whose orders never had one gets none (the model reads it as missing).

A store is *active* when it has at least one order in that window: the stores the batch
features know (they are computed from the same history) and that a consumer could order from.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import polars as pl

from stream_features.contract import OrderCreated, to_ms

__all__ = [
    "BASKET_FIELDS",
    "PROFILE_SCHEMA",
    "orders_frame",
    "profile_order",
    "store_profiles",
]

BASKET_FIELDS = (
    "total_items",
    "subtotal",
    "num_distinct_items",
    "min_item_price",
    "max_item_price",
    "estimated_order_place_duration_s",
    "estimated_store_to_consumer_driving_duration_s",
)
PROFILE_SCHEMA = pl.Schema(
    {
        "store_id": pl.String,
        "market_id": pl.String,
        "store_category": pl.String,
        "order_protocol": pl.Int64,
        **dict.fromkeys(BASKET_FIELDS, pl.Int64),
        "orders": pl.Int64,
        "last_order_ms": pl.Int64,
    }
)


def orders_frame(orders: Iterable[OrderCreated]) -> pl.DataFrame:
    """OrderCreated events as columns (``created_ms`` for the time)."""
    rows = [
        (
            o.store_id,
            o.market_id,
            o.store_category,
            o.order_protocol,
            *(getattr(o, f) for f in BASKET_FIELDS),
            to_ms(o.created_at),
        )
        for o in orders
    ]
    columns = ["store_id", "market_id", "store_category", "order_protocol", *BASKET_FIELDS]
    schema = {c: PROFILE_SCHEMA[c] for c in columns} | {"created_ms": pl.Int64}
    return pl.DataFrame(rows, schema=schema, orient="row")


def store_profiles(orders: pl.DataFrame, as_of: datetime, days: int = 28) -> pl.DataFrame:
    """One profile row per store with an order in ``[as_of - days, as_of)``, sorted by store."""
    end_ms = to_ms(as_of)
    start_ms = to_ms(as_of - timedelta(days=days))
    window = orders.filter((pl.col("created_ms") >= start_ms) & (pl.col("created_ms") < end_ms))
    protocol = (
        window.drop_nulls("order_protocol")
        .group_by("store_id", "order_protocol")
        .agg(pl.len().alias("n"))
        .sort(["store_id", "n", "order_protocol"], descending=[False, True, False])
        .group_by("store_id", maintain_order=True)
        .agg(pl.col("order_protocol").first())
    )
    medians = [pl.col(f).median().round(0).cast(pl.Int64).alias(f) for f in BASKET_FIELDS]
    profiles = (
        window.sort("created_ms")
        .group_by("store_id")
        .agg(
            pl.col("market_id").last(),
            pl.col("store_category").drop_nulls().last(),
            *medians,
            pl.len().cast(pl.Int64).alias("orders"),
            pl.col("created_ms").max().alias("last_order_ms"),
        )
        .join(protocol, on="store_id", how="left")
        .with_columns(
            pl.max_horizontal("total_items", 1).alias("total_items"),
        )
        .with_columns(
            pl.min_horizontal("num_distinct_items", "total_items").alias("num_distinct_items"),
            pl.min_horizontal("min_item_price", "max_item_price").alias("min_item_price"),
        )
    )
    return profiles.select(list(PROFILE_SCHEMA)).cast(PROFILE_SCHEMA).sort("store_id")


def profile_order(profile: dict[str, Any], order_id: str, created_at: datetime) -> OrderCreated:
    """The synthetic order of a profile row (validated like any order on the wire)."""
    return OrderCreated(
        order_id=order_id,
        created_at=created_at,
        market_id=profile["market_id"],
        store_id=profile["store_id"],
        store_category=profile["store_category"],
        order_protocol=profile["order_protocol"],
        **{f: profile[f] for f in BASKET_FIELDS},
    )

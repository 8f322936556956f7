"""A generated training set in the shape ``eta features training-set`` writes.

For tests, benchmarks and a first ``eta train`` without a history: the label depends on several
features the way real deliveries do (the store's usual duration, its current load, how busy the
market's dashers are, driving time) and carries a share of gross outliers (orders left open
for hours, clock skew), so the objective's robustness matters here as it does on real data.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import polars as pl

from stream_features.definitions import FEATURES, category_code, feature_names

__all__ = ["LABEL", "synthetic_training_set"]

LABEL = "actual_duration_s"
_CATEGORIES = ("pizza", "burger", "sushi", "grocery", "thai", "mexican", "dessert", "indian")


def synthetic_training_set(
    n_rows: int = 20_000,
    *,
    seed: int = 0,
    n_stores: int = 300,
    n_markets: int = 6,
    days: float = 28.0,
    outlier_share: float = 0.02,
    start: datetime = datetime(2024, 3, 1, tzinfo=UTC),
) -> pl.DataFrame:
    """Rows ordered by ``created_at``, one Float64 column per model feature plus the label.

    >>> df = synthetic_training_set(200, seed=1)
    >>> df.height, df["actual_duration_s"].dtype
    (200, Float64)
    """
    rng = np.random.default_rng(seed)
    n = n_rows
    offsets_us = np.sort(rng.uniform(0, days * 86400e6, n)).astype(np.int64)
    created_us = int(start.timestamp() * 1e6) + offsets_us
    hour = (created_us // 3_600_000_000) % 24
    dow = ((created_us // 86_400_000_000) + 3) % 7  # 1970-01-01 was a Thursday

    store_idx = rng.integers(0, n_stores, n)
    store_base = rng.lognormal(np.log(1500.0), 0.3, n_stores)  # seconds of prep + handover
    store_market = rng.integers(0, n_markets, n_stores)
    store_cat = rng.integers(0, len(_CATEGORIES), n_stores)
    market_idx = store_market[store_idx]
    base = store_base[store_idx]

    rush = np.exp(-(((hour - 19) % 24) ** 2) / 8.0) + 0.6 * np.exp(-(((hour - 12) % 24) ** 2) / 4)
    onshift = np.maximum(1.0, rng.poisson(40 + 30 * rush)).astype(float)
    busy_ratio = np.clip(rng.beta(2 + 5 * rush, 3), 0, 1)
    busy = np.round(busy_ratio * onshift)
    busy_ratio = busy / onshift
    orders_10m = rng.poisson(1 + 4 * rush * store_base[store_idx] / 1500).astype(float)
    outstanding_m = rng.poisson(30 + 60 * rush).astype(float)
    driving = rng.gamma(4.0, 180.0, n)
    place = rng.normal(300, 60, n).clip(60, None)
    items = rng.integers(1, 12, n).astype(float)
    protocol = rng.integers(1, 8, n).astype(float)

    # The truth: store's usual time, load at the store, busy dashers (steep past 0.8), driving.
    congestion = 900.0 * np.maximum(busy_ratio - 0.6, 0) ** 2 / 0.16
    truth = base + 45.0 * orders_10m + congestion + 1.05 * driving + 25 * items + 0.3 * place
    truth = truth * np.where(protocol == 4, 1.15, 1.0)
    label = truth * rng.lognormal(0, 0.12, n)
    outliers = rng.random(n) < outlier_share
    label[outliers] = label[outliers] * rng.uniform(4, 15, outliers.sum()) + 3600 * rng.random(
        outliers.sum()
    )

    typical_rest = 45 * 3 + 1.05 * 720 + 25 * 6 + 90 + 80
    store_median = base + typical_rest + rng.normal(0, 60, n)
    store_median[rng.random(n) < 0.05] = np.nan  # new stores: no 28-day history
    cat_mean = np.array([store_base[store_cat == c].mean() for c in range(len(_CATEGORIES))])
    cols: dict[str, np.ndarray] = {
        "order__total_items": items,
        "order__subtotal": items * rng.uniform(500, 2000, n),
        "order__num_distinct_items": np.minimum(items, rng.integers(1, 8, n)),
        "order__min_item_price": rng.uniform(200, 800, n),
        "order__max_item_price": rng.uniform(800, 3000, n),
        "order__estimated_order_place_duration_s": place,
        "order__estimated_driving_duration_s": driving + rng.normal(0, 60, n),
        "order__order_protocol": protocol,
        "order__store_category": np.array(
            [category_code(_CATEGORIES[c]) for c in store_cat[store_idx]], dtype=float
        ),
        "order__hour_of_day": hour.astype(float),
        "order__day_of_week": dow.astype(float),
        "store__orders_created__10m": orders_10m,
        "store__orders_created__30m": orders_10m * 3 + rng.poisson(1, n),
        "store__orders_created__60m": orders_10m * 6 + rng.poisson(2, n),
        "store__outstanding_orders": orders_10m + rng.poisson(1, n),
        "store__deliveries__60m": orders_10m * 5 + rng.poisson(1, n),
        "store__delivery_duration_mean__60m": np.where(
            orders_10m > 0, truth + rng.normal(0, 300, n), np.nan
        ),
        "market__orders_created__10m": outstanding_m / 2 + rng.poisson(3, n),
        "market__outstanding_orders": outstanding_m,
        "market__onshift_dashers": onshift,
        "market__busy_dashers": busy,
        "market__busy_ratio": busy_ratio,
        "market__outstanding_per_onshift": outstanding_m / onshift,
        "category__delivery_duration_mean__28d": cat_mean[store_cat[store_idx]] + typical_rest,
        "store__delivery_duration_mean__28d": store_median + 120 + rng.normal(0, 40, n),
        "store__delivery_duration_median__28d": store_median,
        "store__delivery_duration_p90__28d": store_median * 1.35,
        "store__orders__28d": rng.poisson(400, n).astype(float),
        "store_how__delivery_duration_mean__28d": store_median + 200 * rush,
        "market_hour__delivery_duration_mean__28d": 2400 + 300 * rush + 60 * market_idx,
    }
    missing = [name for name in feature_names() if name not in cols]
    if missing:  # a feature added to the registry: give it noise so the frame stays complete
        for name in missing:
            cols[name] = rng.normal(0, 1, n)
    dtypes = {f.name: f.dtype for f in FEATURES}
    return pl.DataFrame(
        {
            "order_id": [f"o{seed}-{i}" for i in range(n)],
            "store_id": [f"s{s}" for s in store_idx],
            "market_id": [f"m{m}" for m in market_idx],
            "store_category": [_CATEGORIES[c] for c in store_cat[store_idx]],
            "created_at": pl.Series(created_us).cast(pl.Datetime("us", "UTC")),
            **{
                name: pl.Series(
                    name,
                    np.round(cols[name]) if dtypes[name] != "float" else cols[name],
                    dtype=pl.Float64,
                )
                for name in feature_names()
            },
            LABEL: pl.Series(LABEL, label, dtype=pl.Float64),
        }
    )

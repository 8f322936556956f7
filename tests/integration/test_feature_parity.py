"""The core promise: Redis streaming windows equal the in-memory point-in-time replay."""

from __future__ import annotations

import numpy as np
import pytest
import redis

from stream_features.definitions import feature_names
from stream_features.redis_windows import RedisFeatureSource
from stream_features.replay_state import ReplayState
from tests.conftest import REDIS_KINDS
from tests.feature_events import messy_stream

pytestmark = [
    pytest.mark.integration,
    pytest.mark.parametrize("redis_client", REDIS_KINDS, indirect=True),
]


@pytest.mark.parametrize("batch_size", [1, 137, 1000])
def test_redis_windows_match_the_replay_on_late_duplicate_out_of_order_events(
    redis_client: redis.Redis, key_prefix: str, batch_size: int
) -> None:
    events = messy_stream(n=6000 if batch_size == 1 else 20_000)
    source = RedisFeatureSource(redis_client, key_prefix=key_prefix)
    streamed = [
        source.update_and_read(events[i : i + batch_size])
        for i in range(0, len(events), batch_size)
    ]
    reference = ReplayState().update_and_read(events)

    values = np.vstack([rows.values for rows in streamed])
    assert values.shape == reference.values.shape
    for j, name in enumerate(feature_names()):
        np.testing.assert_allclose(
            values[:, j], reference.values[:, j], rtol=1e-9, equal_nan=True, err_msg=name
        )
    freshness = np.concatenate([rows.freshness_s for rows in streamed])
    np.testing.assert_allclose(freshness, reference.freshness_s, equal_nan=True)
    for key in ("applied", "duplicates", "late", "unmatched"):
        assert sum(rows.stats[key] for rows in streamed) == reference.stats[key], key
    assert reference.stats["late"] > 0 and reference.stats["duplicates"] > 0


def test_reads_are_read_only(redis_client: redis.Redis, key_prefix: str) -> None:
    events = messy_stream(n=2000)
    source = RedisFeatureSource(redis_client, key_prefix=key_prefix)
    source.update_and_read(events)
    orders = [e for e in events if e.type == "OrderCreated"][:50]
    first, second = source.read(orders), source.read(orders)
    np.testing.assert_array_equal(first.values, second.values)
    assert first.stats == {"applied": 0, "duplicates": 0, "late": 0, "unmatched": 0}


def test_training_set_rows_equal_what_the_stream_reads_with_batch_features(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    """Multi-day history: batch features as of midnight, streaming windows replayed."""
    from datetime import timedelta

    import polars as pl

    from stream_features.batch import compute_batch_tables, deliveries_frame, materialise_redis
    from stream_features.contract import OrderCreated, OrderDelivered, to_ms
    from stream_features.point_in_time import build_training_set, day_start
    from tests.feature_events import T0

    events = messy_stream(n=30_000, stores=40, spacing_s=12.0)  # ~4.2 days
    training = build_training_set(events)
    day = day_start(to_ms(T0 + timedelta(days=2)))
    next_day = day + timedelta(days=1)
    delivered = deliveries_frame(
        [e for e in events if isinstance(e, OrderCreated)],
        [e for e in events if isinstance(e, OrderDelivered)],
    )
    materialise_redis(redis_client, compute_batch_tables(delivered, day), "v1", key_prefix)

    source = RedisFeatureSource(redis_client, key_prefix=key_prefix)
    streamed = [source.update_and_read(events[i : i + 500]) for i in range(0, len(events), 500)]
    ids = [o.order_id for rows in streamed for o in rows.orders if day <= o.created_at < next_day]
    values = np.vstack(
        [rows.values[[day <= o.created_at < next_day for o in rows.orders]] for rows in streamed]
    )
    stream_frame = (
        pl.DataFrame({"order_id": ids})
        .with_columns(*[pl.Series(name, values[:, j]) for j, name in enumerate(feature_names())])
        .unique("order_id", keep="first", maintain_order=True)
    )
    joined = training.join(stream_frame, on="order_id", suffix="__stream")
    assert joined.height > 1000
    batch_col = joined["store__delivery_duration_mean__28d"].to_numpy()
    assert np.isfinite(batch_col).all() and np.unique(batch_col).size > 10  # real values used
    for name in feature_names():
        np.testing.assert_allclose(
            joined[name].to_numpy(),
            joined[f"{name}__stream"].to_numpy(),
            rtol=1e-9,
            equal_nan=True,
            err_msg=name,
        )

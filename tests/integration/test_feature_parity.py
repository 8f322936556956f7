"""The core promise: Redis streaming windows equal the in-memory point-in-time replay."""

from __future__ import annotations

import numpy as np
import pytest
import redis

from stream_features.definitions import feature_names
from stream_features.redis_windows import RedisFeatureSource
from stream_features.replay_state import ReplayState
from tests.feature_events import messy_stream

pytestmark = pytest.mark.integration


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

"""get_online_features: the row the stream would compute, read without changing anything."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
import redis

from stream_features.contract import OrderCreated
from stream_features.online import get_online_features, online_source
from stream_features.redis_windows import RedisFeatureSource
from stream_features.replay_state import ReplayState
from tests.conftest import REDIS_KINDS
from tests.feature_events import messy_stream, order

pytestmark = pytest.mark.integration


def _state_keys(client: redis.Redis, prefix: str) -> dict[bytes, object]:
    """Every key's serialized value (hashes and the partitions' index sets alike)."""
    keys = sorted(client.scan_iter(match=f"{prefix}*", count=1000))
    return {key: client.dump(key) for key in keys}


@pytest.mark.parametrize("redis_client", REDIS_KINDS, indirect=True)
def test_online_rows_equal_the_replay_and_reading_changes_nothing(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    events = messy_stream(n=5000)
    source = RedisFeatureSource(redis_client, key_prefix=key_prefix)
    for i in range(0, len(events), 250):
        source.update_and_read(events[i : i + 250])
    replay = ReplayState()
    replay.update_and_read(events)

    last = max(e.created_at for e in events if isinstance(e, OrderCreated))
    new_orders = [
        order("new-1", last + timedelta(seconds=5), store="s3", market="m0"),
        order("new-2", last + timedelta(seconds=30), store="s7", market="m1", category="thai"),
        order("new-3", last + timedelta(seconds=1), store="never-seen", market="m-new"),
    ]
    before = _state_keys(redis_client, key_prefix)
    online = get_online_features(redis_client, new_orders, key_prefix=key_prefix)
    again = get_online_features(redis_client, new_orders, key_prefix=key_prefix)
    expected = replay.read(new_orders)

    assert online.names == expected.names
    np.testing.assert_allclose(online.values, expected.values, rtol=1e-9, equal_nan=True)
    np.testing.assert_allclose(online.freshness_s, expected.freshness_s, equal_nan=True)
    np.testing.assert_array_equal(online.values, again.values)
    assert np.isfinite(online.values[0, online.names.index("store__orders_created__60m")])
    assert np.isnan(online.freshness_s[2])  # an unseen store has no state behind it
    assert online.stats == {"applied": 0, "duplicates": 0, "late": 0, "unmatched": 0}
    assert _state_keys(redis_client, key_prefix) == before


def test_the_source_is_kept_per_client_and_prefix(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    first = online_source(redis_client, key_prefix)
    assert online_source(redis_client, key_prefix) is first
    assert online_source(redis_client, key_prefix + "other:") is not first
    other = redis.Redis(connection_pool=redis_client.connection_pool)
    assert online_source(other, key_prefix) is not first
    assert len(get_online_features(redis_client, [], key_prefix=key_prefix)) == 0

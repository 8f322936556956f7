"""The Redis layout of entity state: each signal's buckets packed in one field, and state
written by the earlier one-field-per-bucket layout taken over on first touch."""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis

from stream_features.contract import to_ms
from stream_features.definitions import BUCKET_S
from stream_features.redis_windows import RedisFeatureSource
from tests.feature_events import T0, order

pytestmark = pytest.mark.integration


def test_buckets_are_packed_one_field_per_signal(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    source = RedisFeatureSource(redis_client, key_prefix=key_prefix)
    source.update_and_read([order(f"o{i}", T0 + timedelta(seconds=70 * i)) for i in range(5)])

    fields = set(redis_client.hkeys(f"{key_prefix}s:s1"))
    assert b"#created" in fields
    assert not [f for f in fields if b":" in f], "one field per bucket"
    assert redis_client.pttl(f"{key_prefix}s:s1") > 0


def test_state_of_the_per_bucket_layout_is_taken_over(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    key = f"{key_prefix}s:s1"
    bucket = to_ms(T0) // 1000 // BUCKET_S
    redis_client.hset(
        key,
        mapping={
            f"created:{bucket}": 2,
            f"created:{bucket - 1}": 1,
            "outstanding": 3,
            "wm": to_ms(T0),
        },
    )
    source = RedisFeatureSource(redis_client, key_prefix=key_prefix)

    before = source.read([order("probe", T0 + timedelta(seconds=5))])
    assert before.row(0)["store__orders_created__10m"] == 3
    after = source.update_and_read([order("new", T0 + timedelta(seconds=10))])

    assert (
        after.row(0)["store__orders_created__10m"] == 3
    )  # an order's row is read before it counts
    fields = set(redis_client.hkeys(key))
    assert b"#created" in fields and not [f for f in fields if b":" in f]
    again = source.read([order("probe2", T0 + timedelta(seconds=20))])
    assert again.row(0)["store__orders_created__10m"] == 4

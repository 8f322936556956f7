"""The Redis layout of entity state: each signal's buckets packed in one field as running
totals, and state written by the two earlier layouts (one field per bucket; packed bucket,
value pairs) taken over on first touch."""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis

from stream_features.contract import to_ms
from stream_features.definitions import BUCKET_S
from stream_features.redis_windows import RedisFeatureSource
from tests.feature_events import T0, delivered, order

pytestmark = pytest.mark.integration


def _unpacked(client: redis.Redis, key: str, field: str) -> list[int]:
    """A packed field as Redis's own MessagePack reads it (no client library needed)."""
    script = "return cmsgpack.unpack(redis.call('HGET', KEYS[1], ARGV[1]))"
    return [int(v) for v in client.eval(script, 1, key, field)]


def _pack(client: redis.Redis, values: list[int]) -> bytes:
    script = (
        "local t = {} for i, v in ipairs(ARGV) do t[i] = tonumber(v) end return cmsgpack.pack(t)"
    )
    return bytes(client.eval(script, 0, *values))


def test_buckets_are_packed_one_field_per_signal(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    source = RedisFeatureSource(redis_client, key_prefix=key_prefix)
    source.update_and_read([order(f"o{i}", T0 + timedelta(seconds=70 * i)) for i in range(5)])
    late = order("late", T0 + timedelta(seconds=70))  # into an earlier bucket
    source.update_and_read([late])

    key = f"{key_prefix}s:s1"
    fields = set(redis_client.hkeys(key))
    assert not [f for f in fields if b":" in f or f[:1] == b"#"], "an earlier layout"
    counts: dict[int, int] = {}
    for i in [0, 1, 2, 3, 4, 1]:  # the last one is the late order
        bucket = (to_ms(T0) // 1000 + 70 * i) // BUCKET_S
        counts[bucket] = counts.get(bucket, 0) + 1
    expected, total = [], 0
    for bucket in sorted(counts):
        total += counts[bucket]
        expected += [bucket, total]
    assert _unpacked(redis_client, key, "%created") == expected, "bucket, running total"
    assert redis_client.pttl(key) > 0


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
    assert b"%created" in fields and not [f for f in fields if b":" in f]
    again = source.read([order("probe2", T0 + timedelta(seconds=20))])
    assert again.row(0)["store__orders_created__10m"] == 4


def test_state_of_the_packed_pairs_layout_is_taken_over(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    key = f"{key_prefix}s:s1"
    bucket = to_ms(T0) // 1000 // BUCKET_S
    pairs = [bucket, 2, bucket - 12, 5, bucket - 1, 1]  # unordered, as that layout wrote them
    redis_client.hset(
        key,
        mapping={"#created": _pack(redis_client, pairs), "outstanding": 8, "wm": to_ms(T0)},
    )
    source = RedisFeatureSource(redis_client, key_prefix=key_prefix)

    row = source.update_and_read([order("new", T0 + timedelta(seconds=10))]).row(0)
    assert row["store__orders_created__10m"] == 3 and row["store__orders_created__30m"] == 8

    fields = set(redis_client.hkeys(key))
    assert b"#created" not in fields
    assert _unpacked(redis_client, key, "%created") == [bucket - 12, 5, bucket - 1, 6, bucket, 9]


def test_text_that_json_must_escape_reaches_the_script_as_sent(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    """Events travel to the script as one JSON array: a category with quotes, backslashes,
    non-ASCII and control characters must still find its batch features, and ids with every
    character the contract allows must still key the state and the dedup."""
    category, store = 'thaï "bbq" \\ \u2603\t', "s.1:a-B_9"
    redis_client.set(f"{key_prefix}batch:current", "v1")
    redis_client.hset(
        f"{key_prefix}b:v1:store_category:{category}".encode(),
        "category__delivery_duration_mean__28d",
        1234.5,
    )
    source = RedisFeatureSource(redis_client, key_prefix=key_prefix)
    first = order("o:1.a-B_", T0, store=store, category=category)

    row = source.update_and_read([first]).row(0)
    assert row["category__delivery_duration_mean__28d"] == 1234.5
    assert redis_client.exists(f"{key_prefix}s:{store}")
    again = source.update_and_read([first, order("o2", T0, store=store, category=category)])
    assert again.stats["duplicates"] == 1 and again.stats["applied"] == 1
    assert again.row(1)["store__orders_created__10m"] == 1


def test_every_key_of_the_stream_state_expires(redis_client: redis.Redis, key_prefix: str) -> None:
    """TTLs are set at an entity's clean-up, not on every call: the first event takes the
    clean-up, and an order hash emptied by deliveries gets its TTL again with its next order."""
    source = RedisFeatureSource(redis_client, key_prefix=key_prefix)
    first = order("o1", T0)
    source.update_and_read([first])
    source.update_and_read([delivered(first, T0 + timedelta(seconds=60))])
    orders_key = f"{key_prefix}o:s1"
    assert not redis_client.exists(orders_key), "every order delivered: the hash is gone"
    source.update_and_read([order("o2", T0 + timedelta(seconds=120))])  # no clean-up due

    keys = list(redis_client.scan_iter(match=f"{key_prefix}*"))
    assert orders_key.encode() in keys and len(keys) == 4  # s:, m:, their dedup, o:
    assert all(redis_client.pttl(k) > 0 for k in keys), {k: redis_client.pttl(k) for k in keys}

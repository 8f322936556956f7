"""The Redis copy of the worker's state: every key expires, a new owner of a partition loads
exactly the state the old one had, and a failed write leaves memory no further than Redis."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
import redis

from stream_features.redis_windows import RedisFeatureSource
from stream_features.replay_state import ReplayState
from tests.conftest import REDIS_KINDS
from tests.feature_events import T0, delivered, messy_stream, order

pytestmark = [
    pytest.mark.integration,
    pytest.mark.parametrize("redis_client", REDIS_KINDS, indirect=True),
]


def test_every_key_of_the_stream_state_expires(redis_client: redis.Redis, key_prefix: str) -> None:
    """TTLs are set at an entity's clean-up (its first event takes one)."""
    source = RedisFeatureSource(redis_client, key_prefix=key_prefix)
    first = order("o1", T0)
    source.update_and_read([first])
    source.update_and_read([delivered(first, T0 + timedelta(seconds=60))])
    source.update_and_read([order("o2", T0 + timedelta(seconds=120))])  # no clean-up due

    keys = {k.decode() for k in redis_client.scan_iter(match=f"{key_prefix}*")}
    partition = {f"{key_prefix}{{p0}}:{name}" for name in ("views", "seen", "orders")}
    assert partition | {f"{key_prefix}partitions"} == keys
    assert all(redis_client.pttl(k) > 0 for k in keys), {k: redis_client.pttl(k) for k in keys}


@pytest.mark.parametrize("cut", [1000, 3777])
def test_a_new_owner_loads_the_partition_and_goes_on_as_the_old_one_would(
    redis_client: redis.Redis, key_prefix: str, cut: int
) -> None:
    events = messy_stream(n=6000)
    old = RedisFeatureSource(redis_client, key_prefix=key_prefix)
    for i in range(0, cut, 250):
        old.update_and_read(events[i : min(i + 250, cut)])
    successor = RedisFeatureSource(redis_client, key_prefix=key_prefix)
    successor.assign([0])
    rest = successor.update_and_read(events[cut:])

    reference = ReplayState()
    reference.update_and_read(events[:cut])
    expected = reference.update_and_read(events[cut:])
    np.testing.assert_array_equal(rest.values, expected.values)
    np.testing.assert_array_equal(rest.freshness_s, expected.freshness_s)
    assert rest.stats == expected.stats


def test_a_replayed_batch_counts_once(redis_client: redis.Redis, key_prefix: str) -> None:
    """A successor that reads again what was written but not committed: dedup."""
    events = [order(f"o{i}", T0 + timedelta(seconds=i)) for i in range(5)]
    RedisFeatureSource(redis_client, key_prefix=key_prefix).update_and_read(events)
    successor = RedisFeatureSource(redis_client, key_prefix=key_prefix)
    again = successor.update_and_read(events)
    assert again.stats["duplicates"] == 5 and again.stats["applied"] == 0
    probe = successor.read([order("p", T0 + timedelta(seconds=30))])
    assert probe.row(0)["store__orders_created__10m"] == 5


def test_a_failed_write_drops_memory_to_what_redis_has(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    source = RedisFeatureSource(redis_client, key_prefix=key_prefix)
    source.update_and_read([order("a", T0)])
    broken = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    good = source._client
    source._client = broken
    with pytest.raises(redis.ConnectionError):
        source.update_and_read([order("b", T0 + timedelta(seconds=1))])
    source._client = good
    rows = source.update_and_read(
        [order("b", T0 + timedelta(seconds=1)), order("c", T0 + timedelta(seconds=2))]
    )
    assert rows.stats["applied"] == 2  # "b" was not kept in memory ahead of Redis
    assert [rows.row(i)["store__orders_created__10m"] for i in range(2)] == [1, 2]


def test_a_failed_write_nobody_looked_at_fails_the_next_update(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    """A backlog's next batch is applied while the last one's write is in flight: when that
    write fails unseen, the next update raises it rather than apply a batch over a gap, and
    the one after (the engine's retry, from the rewound offsets) loads what Redis has."""
    source = RedisFeatureSource(redis_client, key_prefix=key_prefix)
    source.update_and_read([order("a", T0)])
    good = source._client
    source._client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    _rows, written = source.start_update([order("b", T0 + timedelta(seconds=1))])
    source._client = good
    with pytest.raises(redis.ConnectionError):
        source.start_update([order("c", T0 + timedelta(seconds=2))])
    assert written.exception() is not None
    rows = source.update_and_read(
        [order("b", T0 + timedelta(seconds=1)), order("c", T0 + timedelta(seconds=2))]
    )
    assert [rows.row(i)["store__orders_created__10m"] for i in range(2)] == [1, 2]


def test_another_workers_market_partial_is_seen_by_the_next_batch(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    """Staleness bound of a market feature across workers: B reads the other partials back at
    the end of each batch, so what A wrote behind is in B's reads from the batch after B's next
    read-back: at most one batch of B's behind A's write (plus A's own batch)."""
    a = RedisFeatureSource(redis_client, key_prefix=key_prefix)
    b = RedisFeatureSource(redis_client, key_prefix=key_prefix)
    b.update_and_read([order("b0", T0, store="s2")], [1])  # B owns partition 1
    a.update_and_read([order(f"a{i}", T0 + timedelta(seconds=i)) for i in range(5)], [0] * 5)

    first = b.update_and_read([order("b1", T0 + timedelta(seconds=10), store="s2")], [1])
    second = b.update_and_read([order("b2", T0 + timedelta(seconds=11), store="s2")], [1])
    market = "market__orders_created__10m"
    assert first.row(0)[market] == 1  # B's last read-back was before A wrote
    assert second.row(0)[market] == 2 + 5  # read back at the end of ``first``
    online = a.read([order("p", T0 + timedelta(seconds=12), store="s9")])
    assert online.row(0)[market] == 5 + 3  # the online read sums every partial

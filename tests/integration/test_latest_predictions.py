"""The streamed-prediction cache on the session Redis and on the Redis Cluster.

A batch's keys hash to slots all over a cluster; these check that every one lands where a GET
for it is routed (a script run on one node would write other nodes' keys into slots it does
not own, where no client ever reads them) and carries its TTL.
"""

from __future__ import annotations

import pytest
import redis

from predictor.serving.latest import LatestPredictions, latest_key
from predictor.serving.records import OutRecord
from tests.conftest import REDIS_KINDS

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("redis_client", REDIS_KINDS, indirect=True)
def test_every_prediction_of_a_batch_is_readable_with_its_ttl(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    latest = LatestPredictions(redis_client, key_prefix, ttl_s=60)
    batch = [OutRecord(f"o-{i}".encode(), b'{"order_id":"o-%d"}' % i) for i in range(300)]

    latest.store(batch)

    try:
        assert latest.failures == 0
        assert [latest.get(f"o-{i}") for i in range(300)] == [r.value for r in batch]
        ttls = [redis_client.pttl(latest_key(key_prefix, f"o-{i}")) for i in range(0, 300, 7)]
        assert all(0 < ttl <= 60_000 for ttl in ttls), ttls
        assert latest.get("o-300") is None
    finally:
        redis_client.delete(*[latest_key(key_prefix, f"o-{i}") for i in range(300)])


@pytest.mark.parametrize("redis_client", REDIS_KINDS, indirect=True)
def test_a_later_batch_replaces_an_order_and_an_empty_batch_writes_nothing(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    latest = LatestPredictions(redis_client, key_prefix, ttl_s=60)

    latest.store([OutRecord(b"o-1", b"first"), OutRecord(b"o-2", b"other")])
    latest.store([OutRecord(b"o-1", b"second")])
    latest.store([])

    try:
        assert (latest.get("o-1"), latest.get("o-2"), latest.failures) == (b"second", b"other", 0)
    finally:
        redis_client.delete(latest_key(key_prefix, "o-1"), latest_key(key_prefix, "o-2"))


def test_a_redis_that_does_not_answer_is_counted_not_raised(key_prefix: str) -> None:
    from stream_features.stack import free_port

    client = redis.Redis(port=free_port(), socket_connect_timeout=0.5, socket_timeout=0.5)
    latest = LatestPredictions(client, key_prefix, ttl_s=60)

    latest.store([OutRecord(b"o-1", b"x")])

    assert latest.failures == 1
    client.close()

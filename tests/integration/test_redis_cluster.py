"""The cluster fixture itself, and the client factory's choice of client."""

from __future__ import annotations

import pytest
import redis
from redis.cluster import RedisCluster

from stream_features.local_cluster import LocalCluster
from stream_features.redis_client import redis_client

pytestmark = [pytest.mark.integration, pytest.mark.cluster]


def test_the_cluster_has_three_masters_covering_every_slot(cluster: LocalCluster) -> None:
    client = redis_client(cluster.url)
    try:
        assert isinstance(client, RedisCluster)
        masters = client.get_primaries()
        assert sorted(n.port for n in masters) == sorted(cluster.ports)
        info = client.cluster_info(target_nodes=RedisCluster.RANDOM)
        assert info["cluster_state"] == "ok" and int(info["cluster_slots_ok"]) == 16384
        keys = [f"fixture:{i}" for i in range(60)]  # spread over every master
        for key in keys:
            client.set(key, key)
        assert [v.decode() for v in client.mget_nonatomic(keys)] == keys
        client.delete(*keys)
    finally:
        client.close()


def test_a_plain_url_gives_a_plain_client(redis_url: str) -> None:
    client = redis_client(redis_url)
    try:
        assert type(client) is redis.Redis and client.ping()
    finally:
        client.close()

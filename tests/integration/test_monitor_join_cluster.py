"""The join on the real 3-master Redis Cluster when a master stops and comes back: the batch
fails with an error the monitor retries on (``REDIS_ERRORS``), and the retry, once the master
is back with its keys but without the script, joins as the rules in memory do."""

from __future__ import annotations

from typing import Any

import pytest
from redis.crc import key_slot

from predictor.monitoring.join import MemoryJoin
from predictor.monitoring.redis_join import RedisJoin
from stream_features.local_cluster import LocalCluster
from stream_features.redis_client import REDIS_ERRORS, close_client, redis_client
from tests.integration.test_monitor_join import random_ops

pytestmark = [pytest.mark.integration, pytest.mark.cluster, pytest.mark.slow]


def test_a_batch_that_meets_a_stopped_master_is_retried_to_the_same_join(
    cluster: LocalCluster, key_prefix: str
) -> None:
    client = redis_client(cluster.url, socket_timeout=2.0, socket_connect_timeout=0.5)
    try:
        store, reference = RedisJoin(client, ttl_s=600, key_prefix=key_prefix), MemoryJoin()
        first = random_ops(150, seed=7)
        assert store.join(first).pairs == reference.join(first).pairs

        batch = random_ops(150, seed=8)
        want = reference.join(batch)
        # SIGTERM, not SIGKILL: redis-server 7.0 (appendfsync everysec) can lose the last
        # writes of a killed master, and the test is of the join, not of AOF durability
        cluster.nodes[2].stop()
        try:
            with pytest.raises(REDIS_ERRORS):
                store.join(batch)
        finally:
            cluster.restart(2)  # its keys back from the AOF, its script cache empty

        # the pipeline takes a connection to each master before it writes to any: a master
        # found dead fails the batch with nothing applied, so the retry is its first pass
        again = store.join(batch)
        assert (again.pairs, again.duplicates) == (want.pairs, want.duplicates)
        # from here on the two agree: the state is what one pass of the batch left
        for seed in (9, 10):
            ops = random_ops(150, seed=seed)
            got, expected = store.join(ops), reference.join(ops)
            assert (got.pairs, got.duplicates) == (expected.pairs, expected.duplicates)
    finally:
        close_client(client)


def _move_slot(cluster: LocalCluster, slot: int, owner: int, to: int) -> None:
    """Move ``slot`` with its keys from master ``owner`` to master ``to``, the resharding
    steps of the Redis Cluster specification (IMPORTING, MIGRATING, MIGRATE, SETSLOT NODE)."""
    # Any: redis-py leaves execute_command untyped
    clients: list[Any] = [node.client() for node in cluster.nodes]
    try:
        ids = [c.execute_command("CLUSTER MYID") for c in clients]
        ids = [i.decode() if isinstance(i, bytes) else i for i in ids]
        src, dst = clients[owner], clients[to]
        dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", ids[owner])
        src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", ids[to])
        while keys := src.execute_command("CLUSTER GETKEYSINSLOT", slot, 100):
            port = cluster.nodes[to].port
            src.execute_command("MIGRATE", "127.0.0.1", port, "", 0, 5000, "KEYS", *keys)
        for c in (dst, src, *(c for c in clients if c not in (src, dst))):
            c.execute_command("CLUSTER SETSLOT", slot, "NODE", ids[to])
    finally:
        for c in clients:
            c.close()


def test_the_join_follows_a_slot_moved_to_another_master(
    cluster: LocalCluster, key_prefix: str
) -> None:
    """The pipeline names each call's master from the client's slot map: after a resharding
    the stale map's master answers MOVED and the call goes to the new one, applied once."""
    client = redis_client(cluster.url, socket_timeout=2.0, socket_connect_timeout=0.5)
    store, reference = RedisJoin(client, ttl_s=600, key_prefix=key_prefix), MemoryJoin()
    slot = key_slot(f"{key_prefix}{{o3}}".encode())
    first = random_ops(150, seed=11)
    assert store.join(first).pairs == reference.join(first).pairs
    before = client.get_node_from_key(f"{key_prefix}{{o3}}:d").name
    owner = next(i for i, node in enumerate(cluster.nodes) if before.endswith(f":{node.port}"))
    _move_slot(cluster, slot, owner, to=(owner + 1) % 3)
    try:
        for seed in (12, 13):
            ops = random_ops(150, seed=seed)
            got, want = store.join(ops), reference.join(ops)
            assert (got.pairs, got.duplicates) == (want.pairs, want.duplicates)
        assert client.get_node_from_key(f"{key_prefix}{{o3}}:d").name != before  # map refreshed
    finally:
        _move_slot(cluster, slot, (owner + 1) % 3, to=owner)
        cluster.wait_ok()
        close_client(client)

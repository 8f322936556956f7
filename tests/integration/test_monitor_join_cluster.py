"""The join on the real 3-master Redis Cluster when a master stops and comes back: the batch
fails with an error the monitor retries on (``REDIS_ERRORS``), and the retry, once the master
is back with its keys but without the script, joins as the rules in memory do."""

from __future__ import annotations

import pytest

from predictor.monitoring.join import MemoryJoin
from predictor.monitoring.redis_join import RedisJoin
from stream_features.redis_client import REDIS_ERRORS, redis_client
from tests.integration.test_monitor_join import random_ops
from tests.redis_cluster import LocalCluster

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
        client.close()
        for node in client.get_nodes():
            if node.redis_connection is not None:
                node.redis_connection.connection_pool.disconnect()

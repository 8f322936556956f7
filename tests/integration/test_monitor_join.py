"""The join's Redis script against the in-memory rules, on the session's real Redis and again
on the real 3-master Redis Cluster (``REDIS_KINDS``), where a batch spans many slots."""

from __future__ import annotations

import random

import pytest
import redis

from predictor.monitoring.join import JoinOp, MemoryJoin
from predictor.monitoring.redis_join import RedisJoin
from stream_features.redis_client import is_cluster
from tests.conftest import REDIS_KINDS

pytestmark = [
    pytest.mark.integration,
    pytest.mark.parametrize("redis_client", REDIS_KINDS, indirect=True),
]


def random_ops(n: int, seed: int) -> list[JoinOp]:
    """Predictions (two model names) and deliveries of 60 orders, shuffled, with repeats."""
    rng = random.Random(seed)
    ops = []
    for _ in range(n):
        order = f"o{rng.randrange(60)}"
        if rng.random() < 0.5:
            model = rng.choice(["eta", "eta-challenger"])
            ops.append(JoinOp("P", order, model, f"[{rng.random()}]".encode()))
        else:
            ops.append(JoinOp("D", order, "", f"[{rng.randrange(10**9)}]".encode()))
    return ops


def test_redis_join_makes_the_same_matches_as_the_rules_in_memory(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    store, reference = RedisJoin(redis_client, ttl_s=600, key_prefix=key_prefix), MemoryJoin()
    for batch in range(8):
        ops = random_ops(150, seed=batch)
        got, want = store.join(ops), reference.join(ops)
        assert got.pairs == want.pairs  # in the batch's order on a cluster too
        assert got.duplicates == want.duplicates
    assert store.join([]).pairs == []


def test_every_key_of_the_join_expires(redis_client: redis.Redis, key_prefix: str) -> None:
    store = RedisJoin(redis_client, ttl_s=120, key_prefix=key_prefix)
    store.join(random_ops(200, seed=42))

    keys = list(redis_client.scan_iter(match=f"{key_prefix}*", count=1000))
    assert keys, "the join wrote nothing"
    assert {k.decode().rsplit(":", 1)[-1] for k in keys} <= {"p", "d", "j"}
    ttls = [redis_client.ttl(k) for k in keys]
    assert all(0 < ttl <= 120 for ttl in ttls), ttls
    if is_cluster(redis_client):  # the batch did span the masters
        masters = {redis_client.get_node_from_key(k).name for k in keys}  # type: ignore[attr-defined]  # only RedisCluster has it; this branch runs on a cluster
        assert len(masters) == 3, masters


def test_the_join_goes_on_after_redis_forgets_the_script(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    """A master restarted or failed over has no script cache: the batch still joins, each
    call run once (on a cluster only the calls that met NOSCRIPT are sent again)."""
    store, reference = RedisJoin(redis_client, ttl_s=600, key_prefix=key_prefix), MemoryJoin()
    for batch in range(4):
        redis_client.script_flush()
        ops = random_ops(150, seed=100 + batch)
        got, want = store.join(ops), reference.join(ops)
        assert (got.pairs, got.duplicates) == (want.pairs, want.duplicates)

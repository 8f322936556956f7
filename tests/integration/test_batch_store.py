"""The batch-prediction store on the session Redis and on the Redis Cluster.

The store's pointer, its list of runs and each run's hash are written together (the swap is one
MULTI, the read one script), so on a cluster they must share one hash slot; these run the
store's whole life (write, swap, read through swaps, drop old runs, discard a failed one) on
both.
"""

from __future__ import annotations

import threading

import pytest
import redis
from redis.crc import key_slot

from predictor.batch_scoring.store import KEEP_VERSIONS, BatchPredictionStore
from tests.conftest import REDIS_KINDS

pytestmark = pytest.mark.integration


def _run(version: str, stores: int) -> list[tuple[str, bytes]]:
    return [(f"s{i}", f"{version}:s{i}".encode()) for i in range(stores)]


@pytest.fixture()
def store(redis_client: redis.Redis, key_prefix: str) -> BatchPredictionStore:
    return BatchPredictionStore(redis_client, key_prefix)


def test_every_key_of_a_store_shares_one_slot() -> None:
    for prefix in ["", "t1:", "{tenant}:", "a{b:"]:
        store = BatchPredictionStore(redis.Redis(), prefix)  # keys only: never connects
        keys = [store.pointer, store.versions_key, store.key("v1"), store.key("20261203T1}x")]
        assert len({key_slot(k.encode()) for k in keys}) == 1, (prefix, keys)


def test_a_prefix_that_would_split_the_slot_is_refused() -> None:
    with pytest.raises(ValueError, match="hash slot"):
        BatchPredictionStore(redis.Redis(), "x{}:")


@pytest.mark.parametrize("redis_client", REDIS_KINDS, indirect=True)
def test_a_run_is_invisible_until_published_then_read_whole(store: BatchPredictionStore) -> None:
    assert store.read("s1") == (None, None) and store.current() is None

    assert store.write("v1", _run("v1", 25), chunk=10) == 25
    assert store.read("s1") == (None, None) and store.count("v1") == 25
    assert store.publish("v1") == []

    assert store.current() == "v1"
    assert store.read("s1") == ("v1", b"v1:s1")
    assert store.read("nope") == ("v1", None)


@pytest.mark.parametrize("redis_client", REDIS_KINDS, indirect=True)
def test_publishing_keeps_the_newest_runs_and_discard_drops_an_unpublished_one(
    store: BatchPredictionStore, redis_client: redis.Redis
) -> None:
    versions = [f"v{i}" for i in range(KEEP_VERSIONS + 2)]
    dropped = []
    for version in versions:
        store.write(version, _run(version, 3))
        dropped += store.publish(version)
    store.write("broken", _run("broken", 3))
    store.discard("broken")

    assert dropped == versions[:-KEEP_VERSIONS]
    assert [bool(redis_client.exists(store.key(v))) for v in versions] == [
        v in versions[-KEEP_VERSIONS:] for v in versions
    ]
    assert not redis_client.exists(store.key("broken"))
    assert store.read("s2") == (versions[-1], f"{versions[-1]}:s2".encode())


@pytest.mark.parametrize("redis_client", REDIS_KINDS, indirect=True)
def test_a_reader_sees_one_whole_run_through_swaps(store: BatchPredictionStore) -> None:
    store.write("v0", _run("v0", 200))
    store.publish("v0")
    torn: list[str] = []
    seen: set[str] = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            version, raw = store.read("s199")  # the last store each run writes
            if version is None or raw != f"{version}:s199".encode():
                torn.append(f"{version}: {raw!r}")
            else:
                seen.add(version)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(1, 6):
            store.write(f"v{i}", _run(f"v{i}", 200), chunk=50)
            store.publish(f"v{i}")
    finally:
        stop.set()
        reader.join(10)

    assert not torn, torn[:5]
    assert seen and seen <= {f"v{i}" for i in range(6)}
    assert store.read("s199") == ("v5", b"v5:s199")

"""Redis memory follows active entities, not stream length.

A steady load (2,000 stores in 6 markets, orders, deliveries and snapshots, event time moving
on so windows expire and are pruned) is streamed through ``RedisFeatureSource``; the keys of
this test are measured with ``MEMORY USAGE`` after 100k events and again after 500k. Here the
stream path runs ~13k events/s on two shared cores, so 1M events (~80 s plus generation) is left
to ``bench/features.py``, which reports the 100k / 1M pair.
"""

from __future__ import annotations

import itertools

import pytest
import redis

from bench.loads import keys_memory, steady_load
from stream_features.redis_windows import RedisFeatureSource

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BATCH = 1000


def test_memory_after_500k_events_is_within_2x_of_after_100k(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    source = RedisFeatureSource(redis_client, key_prefix=key_prefix)
    events = steady_load(500_000)
    measured: dict[int, tuple[int, int]] = {}
    streamed = 0
    while batch := list(itertools.islice(events, BATCH)):
        source.update_and_read(batch)
        streamed += len(batch)
        if streamed in (100_000, 500_000):
            measured[streamed] = keys_memory(redis_client, key_prefix)
    small, large = measured[100_000][0], measured[500_000][0]
    assert small > 0
    assert large <= 2 * small, f"{large} bytes after 500k vs {small} after 100k"
    assert measured[500_000][1] <= 2 * measured[100_000][1]  # keys: one set per entity

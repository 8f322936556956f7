"""Online feature reads: model-ready rows for orders, from the state the stream keeps in Redis.

``get_online_features`` is what the HTTP API and batch scoring call: streaming windows, batch
aggregates and the order's own fields merged into ``feature_names()`` order, with defaults and
freshness — exactly the row the stream worker would compute for the order at that moment, and
it changes nothing (the script runs in read-only mode).

A ``RedisFeatureSource`` holds the registered script; building one per call would hash the
script each time, so one is kept per client and key prefix. The cache is weakly keyed by the
client: it goes away with the client, and two clients never share an entry.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence

import redis

from stream_features.contract import OrderCreated
from stream_features.redis_windows import RedisFeatureSource
from stream_features.vectors import FeatureRows

__all__ = ["get_online_features", "online_source"]

_SOURCES: weakref.WeakKeyDictionary[redis.Redis, dict[str, RedisFeatureSource]] = (
    weakref.WeakKeyDictionary()
)
_LOCK = threading.Lock()


def online_source(client: redis.Redis, key_prefix: str = "") -> RedisFeatureSource:
    """The ``RedisFeatureSource`` kept for this client and prefix (built on first use)."""
    with _LOCK:
        by_prefix = _SOURCES.setdefault(client, {})
        source = by_prefix.get(key_prefix)
        if source is None:
            source = by_prefix[key_prefix] = RedisFeatureSource(client, key_prefix=key_prefix)
        return source


def get_online_features(
    client: redis.Redis, orders: Sequence[OrderCreated], *, key_prefix: str = ""
) -> FeatureRows:
    """Rows for ``orders`` as of each order's ``created_at``, without changing any state.

    One script call for all the orders; an order of an unseen store or market gets each
    feature's default and NaN freshness.
    """
    return online_source(client, key_prefix).read(orders)

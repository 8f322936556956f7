"""The one place a Redis client is made: a single Redis or a Redis Cluster, by the URL's scheme.

``ETA_REDIS_URL`` takes ``redis://`` / ``rediss://`` for one Redis (or a proxy in front of
several) and ``redis+cluster://`` / ``rediss+cluster://`` for Redis Cluster: redis-py's
``RedisCluster`` then starts from the node in the URL, discovers the others and sends each
command to the master of its key's slot. Every process (the worker, the API, the batch job,
the monitor, ``eta models`` with its registry pointers) builds its client here, and the HTTP
API its asyncio one (``async_redis_client``) beside it.

On a cluster a command or MULTI/EXEC may touch only one slot. Keys written together share a
hash tag (``{p<n>}`` for a partition's state, ``{<order>}`` for the monitor's join), and work
across slots goes out split by slot (``slot_groups``).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Any, TypeVar

import redis
import redis.asyncio
import redis.asyncio.cluster
from redis.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import RedisClusterException

__all__ = [
    "CLUSTER_SCHEMES",
    "REDIS_ERRORS",
    "AnyRedis",
    "async_redis_client",
    "close_client",
    "is_cluster",
    "is_cluster_url",
    "redis_client",
    "slot_groups",
]

AnyRedis = redis.Redis | RedisCluster
"""What ``redis_client`` returns: both answer the same commands (a cluster by slot)."""

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
"""URL schemes that mean Redis Cluster, and the plain scheme each node is reached with."""

REDIS_ERRORS: tuple[type[Exception], ...] = (redis.RedisError, RedisClusterException)
"""Every failure of a Redis call: redis-py's cluster client raises some (no node reachable for
a slot, a slot map it cannot refresh) as ``RedisClusterException``, outside ``RedisError``."""

T = TypeVar("T")


def is_cluster_url(url: str) -> bool:
    """Whether ``url`` names a Redis Cluster.

    >>> is_cluster_url("redis+cluster://10.0.0.5:7000/0"), is_cluster_url("redis://r:6379/0")
    (True, False)
    """
    return url.partition("://")[0].lower() in CLUSTER_SCHEMES


def _node_url(url: str) -> str:
    """The cluster URL with the scheme its nodes speak.

    >>> _node_url("rediss+cluster://:pw@r:7000/0")
    'rediss://:pw@r:7000/0'
    """
    scheme, sep, rest = url.partition("://")
    return CLUSTER_SCHEMES[scheme.lower()] + sep + rest


def redis_client(url: str, **options: Any) -> Any:
    """A client for ``url``: ``RedisCluster`` for a ``redis+cluster://`` URL, else
    ``redis.Redis``; ``options`` (timeouts, ``retry``, ``health_check_interval``) go to each
    connection either way.

    Typed ``Any``: the callers' signatures say ``redis.Redis``, which a ``RedisCluster``
    stands in for command by command (redis-py gives the two no common base).
    """
    if is_cluster_url(url):
        # a node that does not answer is asked again after a refresh of the slot map; the
        # connection errors still reach the caller, which retries the batch
        return RedisCluster.from_url(_node_url(url), **options)
    return redis.Redis.from_url(url, **options)


def async_redis_client(url: str, **options: Any) -> Any:
    """``redis_client``'s asyncio twin (``redis.asyncio``), for a server that must await its
    round trips (the HTTP API): the cluster client for a ``redis+cluster://`` URL, else the
    single one. A ``retry`` option must be ``redis.asyncio.retry.Retry``. The client belongs
    to the event loop it is first used on; close it with ``await client.aclose()``.
    """
    if is_cluster_url(url):
        return redis.asyncio.cluster.RedisCluster.from_url(_node_url(url), **options)
    return redis.asyncio.Redis.from_url(url, **options)


def close_client(client: Any) -> None:
    """Close ``client`` and every connection it holds: ``RedisCluster.close`` (redis-py 8.1)
    leaves each node's pool open, whose sockets then surface as ``ResourceWarning``."""
    client.close()
    if is_cluster(client):
        for node in client.get_nodes():
            if node.redis_connection is not None:
                node.redis_connection.connection_pool.disconnect()


def is_cluster(client: Any) -> bool:
    """Whether ``client`` (or the pipeline of one) talks to a Redis Cluster."""
    return isinstance(client, RedisCluster)


def slot_groups(client: Any, items: Iterable[T], key_of: Callable[[T], str]) -> list[list[T]]:
    """``items`` in groups whose keys share one hash slot on a cluster; one group otherwise.

    >>> slot_groups(None, ["a", "b"], lambda k: k)
    [['a', 'b']]
    >>> import redis.cluster
    >>> fake = redis.cluster.RedisCluster.__new__(redis.cluster.RedisCluster)
    >>> slot_groups(fake, ["{x}:1", "{y}:1", "{x}:2"], lambda k: k)
    [['{x}:1', '{x}:2'], ['{y}:1']]
    """
    listed = list(items)
    if not is_cluster(client):
        return [listed] if listed else []
    groups: dict[Hashable, list[T]] = {}
    for item in listed:
        groups.setdefault(key_slot(key_of(item).encode()), []).append(item)
    return list(groups.values())

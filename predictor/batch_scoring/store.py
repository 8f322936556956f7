"""Batch predictions in Redis: one hash per run, made visible by a single pointer swap.

Layout (under the key prefix): ``{bp}:<version>`` is a hash, field = store id, value = the
store's JSON (``StoreEta``: its basket and one DeliveryPrediction per slot), written whole
before ``{bp}:current`` is set to ``<version>`` in one SET (with ``{bp}:versions``, the list of
published runs, in the same MULTI). A reader resolves the pointer and the field in one script
call, so it sees one run or the other, never half of one. The previous run is kept (a reader may
have just resolved it); older ones are unlinked. ``stream_features.batch`` swaps batch features
the same way.

The ``{bp}`` hash tag puts every one of these keys in one hash slot, so on a Redis Cluster the
swap's MULTI and the read's script (which names the run's key only once it has read the pointer)
stay on one node, as they must; a single Redis ignores the braces. One run is one hash, so it
lived on one node before too: the tag moves no load. Keys before the tag were ``bp:<version>``
and ``bp:current``: a run written by an older release is not seen until the next
``eta predict batch``.
"""

from __future__ import annotations

from collections.abc import Iterable

import redis
from redis.crc import key_slot

__all__ = ["BatchPredictionStore"]

KEEP_VERSIONS = 2
TAG = "{bp}:"
"""Between the key prefix and each key's own name: the hash tag that keeps them in one slot."""

# The run's key is built from the pointer's value, so it cannot be declared; it shares the
# pointer's slot (KEYS[1]), which is what a cluster node requires of a script's keys.
_READ = """
local version = redis.call('GET', KEYS[1])
if not version then return {false, false} end
return {version, redis.call('HGET', ARGV[1] .. version, ARGV[2])}
"""


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class BatchPredictionStore:
    """Write a run's per-store JSON under a new version, swap it in, read one store."""

    def __init__(self, client: redis.Redis, key_prefix: str = "") -> None:
        """``client`` is a ``redis.Redis`` or a ``RedisCluster`` (``redis_client``). A prefix
        whose braces would hash each key whole (``"x{}:"``) is refused: on a cluster it would
        spread the pointer and its runs over slots, and the swap would fail."""
        self.client, self.prefix = client, key_prefix
        keys = (self.pointer, self.versions_key, self.key(""))
        if len({key_slot(k.encode()) for k in keys}) > 1:
            raise ValueError(
                f"key prefix {key_prefix!r} puts the batch store's keys in more than one hash "
                "slot (its braces hide the {bp} tag); use one without '{}'"
            )
        self._read = client.register_script(_READ)

    def key(self, version: str) -> str:
        """The hash holding run ``version``."""
        return f"{self.prefix}{TAG}{version}"

    @property
    def pointer(self) -> str:
        """The key naming the current run."""
        return f"{self.prefix}{TAG}current"

    @property
    def versions_key(self) -> str:
        """The list of published runs, oldest first (for dropping all but the newest)."""
        return f"{self.prefix}{TAG}versions"

    def current(self) -> str | None:
        value = self.client.get(self.pointer)
        return None if value is None else _text(value)

    def write(self, version: str, items: Iterable[tuple[str, bytes]], chunk: int = 2000) -> int:
        """Add stores to the (not yet visible) run ``version``; returns how many were written."""
        pipe = self.client.pipeline(transaction=False)
        key, pending, written = self.key(version), {}, 0
        for store_id, value in items:
            pending[store_id] = value
            if len(pending) >= chunk:
                pipe.hset(key, mapping=pending)  # type: ignore[arg-type]  # redis-py types mapping values narrower than it takes (bytes)
                written += len(pending)
                pending = {}
                pipe.execute()
        if pending:
            pipe.hset(key, mapping=pending)  # type: ignore[arg-type]  # as above
            written += len(pending)
            pipe.execute()
        return written

    def publish(self, version: str) -> list[str]:
        """Make ``version`` the current run in one SET; drop all but the newest runs. Returns
        the versions dropped."""
        pipe = self.client.pipeline(transaction=True)
        pipe.set(self.pointer, version)
        pipe.rpush(self.versions_key, version)
        pipe.execute()  # one slot, so a MULTI a cluster runs too
        versions = [_text(v) for v in self.client.lrange(self.versions_key, 0, -1)]
        dropped = versions[:-KEEP_VERSIONS]
        for old in dropped:
            self.client.unlink(self.key(old))
            self.client.lrem(self.versions_key, 1, old)
        return dropped

    def discard(self, version: str) -> None:
        """Drop a run that failed before it was published (readers never saw it)."""
        self.client.unlink(self.key(version))

    def read(self, store_id: str) -> tuple[str | None, bytes | None]:
        """``(current version, the store's JSON)``; None for what is not there."""
        version, value = self._read(keys=[self.pointer], args=[self.key(""), store_id])
        return (
            None if version is None else _text(version),
            value if isinstance(value, bytes) else None,
        )

    def count(self, version: str) -> int:
        return int(self.client.hlen(self.key(version)))

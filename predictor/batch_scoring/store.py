"""Batch predictions in Redis: one hash per run, made visible by a single pointer swap.

Layout (under the key prefix): ``bp:<version>`` is a hash, field = store id, value = the
store's JSON (``StoreEta``: its basket and one DeliveryPrediction per slot), written whole
before ``bp:current`` is set to ``<version>`` in one SET. A reader resolves the pointer and the
field in one script call, so it sees one run or the other, never half of one. The previous run
is kept (a reader may have just resolved it); older ones are unlinked. ``stream_features.batch``
swaps batch features the same way.
"""

from __future__ import annotations

from collections.abc import Iterable

import redis

__all__ = ["BatchPredictionStore"]

KEEP_VERSIONS = 2
_READ = """
local version = redis.call('GET', KEYS[1])
if not version then return {false, false} end
return {version, redis.call('HGET', ARGV[1] .. 'bp:' .. version, ARGV[2])}
"""


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class BatchPredictionStore:
    """Write a run's per-store JSON under a new version, swap it in, read one store."""

    def __init__(self, client: redis.Redis, key_prefix: str = "") -> None:
        self.client, self.prefix = client, key_prefix
        self._read = client.register_script(_READ)

    def key(self, version: str) -> str:
        return f"{self.prefix}bp:{version}"

    @property
    def pointer(self) -> str:
        return f"{self.prefix}bp:current"

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
        pipe.rpush(f"{self.prefix}bp:versions", version)
        pipe.execute()
        versions = [_text(v) for v in self.client.lrange(f"{self.prefix}bp:versions", 0, -1)]
        dropped = versions[:-KEEP_VERSIONS]
        for old in dropped:
            self.client.unlink(self.key(old))
            self.client.lrem(f"{self.prefix}bp:versions", 1, old)
        return dropped

    def discard(self, version: str) -> None:
        """Drop a run that failed before it was published (readers never saw it)."""
        self.client.unlink(self.key(version))

    def read(self, store_id: str) -> tuple[str | None, bytes | None]:
        """``(current version, the store's JSON)``; None for what is not there."""
        version, value = self._read(keys=[self.pointer], args=[self.prefix, store_id])
        return (
            None if version is None else _text(version),
            value if isinstance(value, bytes) else None,
        )

    def count(self, version: str) -> int:
        return int(self.client.hlen(self.key(version)))

"""The latest streamed prediction per order, kept in Redis for ``GET /v1/predictions/{id}``.

The topic is the record of truth; this is a cache with a TTL so the HTTP API can answer "what
did the stream predict for this order" without reading Kafka. The worker writes each batch's
predictions on its feature thread, after scoring, so the write never delays producing. On a
single Redis that is one script call with every key and value as arguments, not a pipeline of
SETs: building and parsing a pipeline's thousand commands cost the worker ~40% of its
throughput (measured with bench/stream.py, ETA_PREDICTION_TTL_S=0 against 7200). On a Redis
Cluster a script runs on one node and may touch keys of one slot only, and a batch's orders
hash all over the cluster (``pred:<order>`` has no tag: the API reads one order by its id), so
there it is a non-transactional cluster pipeline of SET PX, which redis-py sends as one batch
per master and retries on MOVED/ASK. It costs more than the script: 1000 predictions took a
median 41-55 ms over 30 calls (two runs, noisy 2-core machine, 3 local masters) against 8-11 ms
for the script on one Redis and 11 ms for a plain pipeline there. A script per node would be
cheaper, but Redis 7 refuses one that touches several slots unless flagged (a flag 6.2 cannot
parse), and it would need its own handling of a slot on the move.

A failed write is logged and counted, not retried: the predictions are already on their way to
the topic, and the next batch's feature round trip will hit the same outage and rewind if Redis
is really down.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import redis

from predictor.serving.pipeline import BatchResult
from predictor.serving.records import OutRecord
from stream_features.redis_client import REDIS_ERRORS, is_cluster

__all__ = ["LatestPredictions", "latest_key"]

log = logging.getLogger("etastream.stream")
_WRITE_ERRORS: tuple[type[Exception], ...] = (*REDIS_ERRORS, ConnectionError, TimeoutError)
"""What a failed write raises (the cluster client's own errors too): counted, never raised."""

_SET_ALL = """
for i = 2, #ARGV, 2 do redis.call('SET', ARGV[i], ARGV[i + 1], 'PX', ARGV[1]) end
return (#ARGV - 1) / 2
"""


def latest_key(key_prefix: str, order_id: str) -> str:
    """The Redis key holding the latest streamed prediction of ``order_id``.

    >>> latest_key("t1:", "o-42")
    't1:pred:o-42'
    """
    return f"{key_prefix}pred:{order_id}"


class LatestPredictions:
    """Write and read the cached predictions (the prediction JSON exactly as produced)."""

    def __init__(self, client: redis.Redis, key_prefix: str = "", ttl_s: int = 7200) -> None:
        """``client`` is a ``redis.Redis`` or a ``RedisCluster`` (``redis_client``)."""
        self.client, self.key_prefix, self.ttl_s = client, key_prefix, ttl_s
        self.failures = 0
        self._cluster = is_cluster(client)
        self._set_all = client.register_script(_SET_ALL)

    def store(self, predictions: Sequence[OutRecord]) -> None:
        """Every prediction SET with its expiry (one script call, or one pipeline on a
        cluster); errors are logged, never raised."""
        if not predictions:
            return
        prefix = latest_key(self.key_prefix, "").encode()  # one place spells the key
        try:
            if self._cluster:
                self._store_by_node(prefix, predictions)
            else:
                args: list[bytes | int] = [self.ttl_s * 1000]
                for out in predictions:
                    args.append(prefix + (out.key or b""))
                    args.append(out.value)
                self._set_all(args=args)
        except _WRITE_ERRORS as exc:
            self.failures += 1
            log.warning(
                "could not cache the batch's predictions in Redis",
                extra={"error": repr(exc), "predictions": len(predictions)},
            )

    def _store_by_node(self, prefix: bytes, predictions: Sequence[OutRecord]) -> None:
        """SET PX each prediction through a cluster pipeline: redis-py groups the commands by
        the master of each key's slot and sends each group in one write, following MOVED/ASK
        itself; the first failed SET is raised once all have been answered."""
        pipe = self.client.pipeline(transaction=False)
        ttl_ms = self.ttl_s * 1000
        for out in predictions:
            pipe.set(prefix + (out.key or b""), out.value, px=ttl_ms)
        pipe.execute()

    def store_result(self, result: BatchResult) -> None:
        """``store`` a scored batch's predictions (the engines' ``after_scored`` hook)."""
        self.store(result.predictions)

    def get(self, order_id: str) -> bytes | None:
        """The prediction JSON last streamed for ``order_id``, or None (unknown or expired)."""
        value = self.client.get(latest_key(self.key_prefix, order_id))
        return value if isinstance(value, bytes) else None

"""The join's state in Redis: one script call per batch, every key expiring after the TTL.

Keys, under ``key_prefix``: ``{<order>}:p`` (hash of waiting predictions by model name),
``{<order>}:d`` (the delivery) and ``{<order>}:j`` (model names already joined). The keys of an
order share a hash tag, so on Redis Cluster a batch could be split by slot; this adapter sends
a batch to one node. Memory follows the orders of the last TTL, never the stream's length.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources

import redis

from predictor.monitoring.join import JoinOp, JoinResult

__all__ = ["DEFAULT_PREFIX", "RedisJoin"]

DEFAULT_PREFIX = "eta:monitor:"


class RedisJoin:
    """``JoinStore`` on Redis (``join.lua``)."""

    def __init__(self, client: redis.Redis, ttl_s: int, key_prefix: str = DEFAULT_PREFIX) -> None:
        self.ttl_s, self.key_prefix = ttl_s, key_prefix
        source = resources.files("predictor.monitoring").joinpath("join.lua").read_text()
        self._script = client.register_script(source)

    def join(self, ops: Sequence[JoinOp]) -> JoinResult:
        if not ops:
            return JoinResult()
        args: list[str | bytes | int] = [self.key_prefix, self.ttl_s]
        for op in ops:
            args += [op.kind, op.order_id, op.model_name, op.payload]
        reply = self._script(keys=[], args=args)
        result = JoinResult(duplicates=int(reply[0]))
        for i in range(1, len(reply), 4):
            order, model, prediction, delivery = reply[i : i + 4]
            result.pairs.append((_text(order), _text(model), bytes(prediction), bytes(delivery)))
        return result


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value

"""The join's state in Redis (``join.lua``), every key expiring after the TTL.

Keys, under ``key_prefix``: ``{<order>}:p`` (hash of waiting predictions by model name),
``{<order>}:d`` (the delivery) and ``{<order>}:j`` (model names already joined). The script
touches only keys it is given in KEYS (three per op), as Redis Cluster requires of a script,
so one script, one join rule, runs two ways:

- on a single Redis a batch is one script call: one round trip, applied atomically;
- on Redis Cluster a script may touch one slot only. The three keys of an order share the hash
  tag ``{<order>}``, so the ops are split by slot (``slot_groups``: an order's ops stay in one
  group, in their order) and each group is one script call on its slot's master, all of them
  in one non-transactional cluster pipeline (one round trip per node): on the test suite's
  3-master cluster, batches of 200 and 2,000 ops of distinct orders (nearly a slot an op) ran
  3-4 times faster that way than as one call after another (a round trip per slot).

Either way the matches come back in the order of the ops that made them, so both paths give
the same pairs and duplicates. On a cluster a batch is atomic per slot, not as a whole. A
master already down fails the batch with nothing applied (the pipeline connects to every
master before it writes to any), so the monitor's retry is its first pass. A master lost after
the pipeline wrote leaves the slots that answered applied: on the retry their ops count as
duplicates and the matches they made are not reported (a reply lost on a single Redis does the
same to a whole batch). Memory follows the orders of the last TTL, never the stream's length.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from typing import Any

import redis
from redis.exceptions import NoScriptError

from predictor.monitoring.join import JoinOp, JoinResult
from stream_features.redis_client import is_cluster, slot_groups

__all__ = ["DEFAULT_PREFIX", "RedisJoin"]

DEFAULT_PREFIX = "eta:monitor:"

_Call = tuple[list[str], list[str | bytes | int]]
"""One script call: its KEYS and its ARGV."""


class RedisJoin:
    """``JoinStore`` on Redis (``join.lua``), a single Redis or a Redis Cluster."""

    def __init__(self, client: redis.Redis, ttl_s: int, key_prefix: str = DEFAULT_PREFIX) -> None:
        self.ttl_s, self.key_prefix = ttl_s, key_prefix
        # Any: the cluster path's calls (get_node_from_key, execute_command with target_nodes)
        # are RedisCluster's, untyped in redis-py; redis_client() hands out Any for the same reason
        self._client: Any = client
        self._cluster = is_cluster(client)
        source = resources.files("predictor.monitoring").joinpath("join.lua").read_text()
        self._script = client.register_script(source)

    def join(self, ops: Sequence[JoinOp]) -> JoinResult:
        if not ops:
            return JoinResult()
        if not self._cluster:
            return self._result([(list(range(len(ops))), self._script(*self._call(ops)))], ops)
        groups = slot_groups(self._client, range(len(ops)), lambda i: self._base(ops[i]))
        calls = [self._call([ops[i] for i in group]) for group in groups]
        return self._result(list(zip(groups, self._run_pipelined(calls), strict=True)), ops)

    def _base(self, op: JoinOp) -> str:
        """The common start of an order's keys: its hash tag decides their slot."""
        return f"{self.key_prefix}{{{op.order_id}}}"

    def _call(self, ops: Sequence[JoinOp]) -> _Call:
        keys: list[str] = []
        args: list[str | bytes | int] = [self.ttl_s]
        for op in ops:
            base = self._base(op)
            keys += [base + ":p", base + ":d", base + ":j"]
            args += [op.kind, op.model_name, op.payload]
        return keys, args

    def _run_pipelined(self, calls: list[_Call]) -> list[Any]:
        """Every call's reply, the calls sent in one cluster pipeline (grouped by node).

        ``EVALSHA`` in a pipeline cannot load the script when a node lacks it (a new or
        restarted master): those calls alone are sent again after ``SCRIPT LOAD`` on every
        master, the others having run already.
        """
        replies: list[Any] = self._pipeline(calls, list(range(len(calls))))
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:
            self._script.sha = self._client.script_load(self._script.script)
            for i, reply in zip(missing, self._pipeline(calls, missing), strict=True):
                replies[i] = reply
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    def _pipeline(self, calls: list[_Call], which: list[int]) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        for i in which:
            keys, args = calls[i]
            # redis-py blocks ``pipe.evalsha`` on a cluster (a script might span slots), and
            # would ask a node for the keys of each EVALSHA (COMMAND GETKEYS, a round trip per
            # call): these keys share one slot, whose master is named here instead (a MOVED
            # reply is retried by the pipeline with the refreshed slot map)
            node = self._client.get_node_from_key(keys[0])
            pipe.execute_command(
                "EVALSHA", self._script.sha, len(keys), *keys, *args, target_nodes=node
            )
        replies: list[Any] = pipe.execute(raise_on_error=False)
        return replies

    def _result(
        self, replies: list[tuple[Sequence[int], Any]], ops: Sequence[JoinOp]
    ) -> JoinResult:
        """The pairs of every call in the order of the ops that made them, and the duplicates.

        A reply names an op by its index in its call (from 1); ``index`` maps it back to the
        batch. Sorting by it (stable: a delivery's several matches keep their order) puts the
        calls of a cluster's slots back into the batch's order.
        """
        result = JoinResult()
        found: list[tuple[int, tuple[str, str, bytes, bytes]]] = []
        for index, reply in replies:
            result.duplicates += int(reply[0])
            for i in range(1, len(reply), 4):
                at, model, prediction, delivery = reply[i : i + 4]
                op = index[int(at) - 1]
                pair = (ops[op].order_id, _text(model), bytes(prediction), bytes(delivery))
                found.append((op, pair))
        if len(replies) > 1:
            found.sort(key=lambda item: item[0])
        result.pairs = [pair for _, pair in found]
        return result


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value

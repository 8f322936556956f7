"""Redis reads written once, run by a blocking or an asyncio client: a *plan* is a generator
that yields the commands of one round trip and is sent their replies, until it returns.

The online read is needed by callers of both kinds: the batch job and the tests block on
redis-py, while the HTTP API must await its round trips, so that a slow or hung Redis holds
one request and not the event loop (``/healthz`` with it). Writing the read as a plan keeps
its logic (which keys, how replies become rows, the caches it fills) in one place, free of
I/O; ``run_plan`` and ``run_plan_async`` are the only code that touches a client, each a
pipeline per round trip (non-transactional, so a Redis Cluster splits it by slot).

>>> def plan():
...     version, = yield [("GET", "batch:current")]
...     return version
>>> class Pipe:
...     def __init__(self): self.sent = []
...     def execute_command(self, name, key): self.sent.append(key)
...     def execute(self): return [f"<{k}>" for k in self.sent]
>>> class Client:
...     def pipeline(self, transaction): return Pipe()
>>> run_plan(Client(), plan())
'<batch:current>'
>>> import asyncio
>>> class AsyncPipe(Pipe):
...     async def execute(self): return [f"<{k}>" for k in self.sent]
>>> class AsyncClient:
...     def pipeline(self, transaction): return AsyncPipe()
>>> asyncio.run(run_plan_async(AsyncClient(), plan()))
'<batch:current>'
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any, TypeAlias, TypeVar

__all__ = ["Command", "Plan", "queued", "run_plan", "run_plan_async"]

T = TypeVar("T")

Command: TypeAlias = tuple[Any, ...]
"""A command as Redis reads it, flat: its name and each argument (str, bytes, int or float),
e.g. ``("HMGET", key, field, field)``; the stream's write-behind sends the same
(``redis_transaction``)."""

Plan: TypeAlias = Generator[list[Command], list[Any], T]
"""Yields each round trip's commands (never an empty list), is sent their replies in order,
and returns its result."""


def queued(pipe: Any, commands: Sequence[Command]) -> Any:
    """``commands`` queued on a redis-py pipeline (blocking, asyncio or cluster), which is
    returned; its replies go through redis-py's response callbacks (HGETALL: a dict)."""
    for command in commands:
        pipe.execute_command(*command)
    return pipe


def run_plan(client: Any, plan: Plan[T]) -> T:
    """Run ``plan`` on a blocking client (``redis.Redis`` or ``RedisCluster``)."""
    try:
        commands = next(plan)
        while True:
            replies = queued(client.pipeline(transaction=False), commands).execute()
            commands = plan.send(replies)
    except StopIteration as done:
        result: T = done.value
        return result


async def run_plan_async(client: Any, plan: Plan[T]) -> T:
    """Run ``plan`` on an asyncio client (``redis.asyncio.Redis`` or its ``RedisCluster``)."""
    try:
        commands = next(plan)
        while True:
            replies = await queued(client.pipeline(transaction=False), commands).execute()
            commands = plan.send(replies)
    except StopIteration as done:
        result: T = done.value
        return result

"""Adaptive micro-batching of online requests: one feature read and one predict for all the
orders that are waiting, as the stream does per micro-batch.

A request parks its orders and awaits a future; the first one to park starts the flusher task,
whose first step runs after every handler already runnable in this turn of the event loop has
parked too. With one request in flight that is the request alone, with no added wait. The
flusher awaits the feature read (the asyncio client: the loop serves other requests, and
``/healthz``, meanwhile), then scores on the loop; the requests that arrived during that flush
form the next one, so under load the fixed costs of a round trip (the Redis read, building the
rows, the model call) are shared. One flush is in flight at a time.

Each order's row is read as of its own ``created_at`` from the views the worker writes behind,
and the read changes nothing, so an order's answer does not depend on the others in its batch.
One flush reads the model once, before its read: a batch is scored by exactly one version.
Scoring holds the loop (on a thread of its own it served a quarter of the answers a second
under load: docs/serving.md), so a flush takes at most ``max_orders`` orders and a waiting list
of 1000-order requests is served over several flushes.

When the read fails with one of ``unavailable`` (the store is down or hung: the API passes the
Redis errors), the requests that parked meanwhile fail with it too, at once: each flush after it
would wait out the same timeout, so a queue of them would answer its 503s one timeout apart."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from predictor.api.errors import UnusablePrediction
from predictor.serving.pipeline import ScoringModel
from stream_features.contract import OrderCreated
from stream_features.vectors import FeatureRows

__all__ = ["OnlineBatcher", "Read", "Score"]

Read = Callable[[Sequence[OrderCreated]], Awaitable[FeatureRows]]
"""Reads the orders' feature rows (one round trip, awaited)."""

Score = Callable[[FeatureRows, ScoringModel], list[bytes | UnusablePrediction]]
"""Scores the rows with a model: an answer, or why it is unusable, per order, in order."""


@dataclass
class _Parked:
    orders: list[OrderCreated]
    future: asyncio.Future[list[bytes]]


class OnlineBatcher:
    """Coalesce concurrent requests' orders; see the module docstring."""

    def __init__(
        self,
        read: Read,
        score: Score,
        model: Callable[[], ScoringModel],
        max_orders: int = 2000,
        observe: Callable[[int], None] | None = None,
        unavailable: tuple[type[Exception], ...] = (),
    ) -> None:
        self._read, self._score, self._model = read, score, model
        self.max_orders = max_orders
        self._unavailable = unavailable
        self._observe = observe
        self._parked: list[_Parked] = []
        self._flusher: asyncio.Task[None] | None = None

    async def predict(self, orders: list[OrderCreated]) -> list[bytes]:
        """The answers for ``orders`` (in order), scored with whatever else is waiting."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[bytes]] = loop.create_future()
        self._parked.append(_Parked(orders, future))
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush_all())
        return await future

    def _take(self) -> list[_Parked]:
        taken: list[_Parked] = []
        count = 0
        while self._parked and (
            not taken or count + len(self._parked[0].orders) <= self.max_orders
        ):
            parked = self._parked.pop(0)
            taken.append(parked)
            count += len(parked.orders)
        return taken

    async def _flush_all(self) -> None:
        try:
            while self._parked:
                batch = [p for p in self._take() if not p.future.done()]
                try:
                    await self._flush(batch)
                except Exception as exc:  # past the scoring (a bug): 500s, never a hang
                    for parked in batch:
                        if not parked.future.done():
                            parked.future.set_exception(exc)
        finally:  # no await between the last look at the list and this: nothing is stranded
            self._flusher = None

    async def _flush(self, batch: list[_Parked]) -> None:
        if not batch:  # every client in it went away
            return
        orders = [order for parked in batch for order in parked.orders]
        try:
            model = self._model()
            answers = self._score(await self._read(orders), model)
        except asyncio.CancelledError:  # the app is stopping: so are the requests waiting
            for parked in batch:
                parked.future.cancel()
            raise
        except Exception as exc:  # each request reports it (Redis down: 503, else 500)
            if isinstance(exc, self._unavailable):  # the store just failed: so would the next
                batch, self._parked = batch + self._parked, []  # flush, after as long again
            for parked in batch:
                if not parked.future.done():
                    parked.future.set_exception(exc)
            return
        if self._observe is not None:
            self._observe(len(orders))
        start = 0
        for parked in batch:
            mine = answers[start : start + len(parked.orders)]
            start += len(parked.orders)
            if parked.future.done():
                continue
            unusable = next((a for a in mine if isinstance(a, UnusablePrediction)), None)
            if unusable is not None:
                parked.future.set_exception(unusable)
            else:
                parked.future.set_result([a for a in mine if isinstance(a, bytes)])

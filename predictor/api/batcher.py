"""Adaptive micro-batching of online requests: one feature read and one predict for all the
orders that are waiting, as the stream does per micro-batch.

A request parks its orders and awaits a future; the first one to park schedules a flush with
``loop.call_soon``, which runs after every handler already runnable in this turn of the event
loop has parked too. With one request in flight that is the request alone, with no added wait;
under load the requests that arrived while the previous flush ran form the next batch, so the
fixed costs of a round trip (the Redis read, building the rows, the model call) are shared.

Each order's row is read as of its own ``created_at`` from the views the worker writes behind,
and the read changes nothing, so an order's answer does not depend on the others in its batch.
One flush reads the model once: a batch is scored by exactly one version. A flush blocks the
event loop while it reads and scores (as a single request's scoring did before): on a thread of
its own it served a quarter of the answers a second under load (docs/serving.md). It takes at most
``max_orders`` orders, so that time stays bounded and a waiting list of 1000-order requests is
served over several turns."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from predictor.api.errors import UnusablePrediction
from predictor.serving.pipeline import ScoringModel
from stream_features.contract import OrderCreated

__all__ = ["OnlineBatcher", "Score"]

Score = Callable[[Sequence[OrderCreated], ScoringModel], list[bytes | UnusablePrediction]]
"""Scores orders with a model: an answer, or why it is unusable, per order, in order."""


@dataclass
class _Parked:
    orders: list[OrderCreated]
    future: asyncio.Future[list[bytes]]


class OnlineBatcher:
    """Coalesce concurrent requests' orders; see the module docstring."""

    def __init__(
        self,
        score: Score,
        model: Callable[[], ScoringModel],
        max_orders: int = 2000,
        observe: Callable[[int], None] | None = None,
    ) -> None:
        self._score, self._model, self.max_orders = score, model, max_orders
        self._observe = observe
        self._parked: list[_Parked] = []
        self._scheduled = False

    async def predict(self, orders: list[OrderCreated]) -> list[bytes]:
        """The answers for ``orders`` (in order), scored with whatever else is waiting."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[bytes]] = loop.create_future()
        self._parked.append(_Parked(orders, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush, loop)
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

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        batch = [p for p in self._take() if not p.future.done()]  # done: the client went away
        if self._parked:
            loop.call_soon(self._flush, loop)  # the rest in the next turn
        else:
            self._scheduled = False
        if not batch:
            return
        orders = [order for parked in batch for order in parked.orders]
        try:
            answers = self._score(orders, self._model())
        except Exception as exc:  # each request reports it (Redis down: 503, else 500)
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

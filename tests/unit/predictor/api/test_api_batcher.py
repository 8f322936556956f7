"""The online batcher: concurrent requests share a flush, each gets its own answers back."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from predictor.api.batcher import OnlineBatcher
from predictor.api.errors import UnusablePrediction
from predictor.serving.pipeline import ScoringModel
from stream_features.contract import OrderCreated
from tests.api_fakes import FixedModel, order_json


def _orders(prefix: str, n: int) -> list[OrderCreated]:
    return [
        OrderCreated.model_validate(order_json(f"{prefix}{i}", created_at=datetime.now(UTC)))
        for i in range(n)
    ]


class Recorder:
    """A read that hands the orders on as their "rows" (held until ``gate`` is set, when one is
    given) and fails with ``fail``; a scorer that answers each order with its id. Records the
    batches read and the model each was scored with."""

    def __init__(
        self,
        unusable: frozenset[str] = frozenset(),
        fail: Exception | None = None,
        gate: asyncio.Event | None = None,
    ) -> None:
        self.batches: list[list[str]] = []
        self.models: list[str] = []
        self.unusable, self.fail, self.gate = unusable, fail, gate

    async def read(self, orders: Sequence[OrderCreated]) -> Any:
        self.batches.append([o.order_id for o in orders])
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return orders

    def score(self, orders: Any, model: ScoringModel) -> list[bytes | UnusablePrediction]:
        self.models.append(model.version)
        return [
            UnusablePrediction("m", "1", o.order_id, float("inf"))
            if o.order_id in self.unusable
            else o.order_id.encode()
            for o in orders
        ]


def _batcher(recorder: Recorder, model: Any, **options: Any) -> OnlineBatcher:
    return OnlineBatcher(recorder.read, recorder.score, model, **options)


def _run(batcher: OnlineBatcher, requests: list[list[OrderCreated]]) -> list[object]:
    async def go() -> list[object]:
        return await asyncio.gather(*(batcher.predict(r) for r in requests), return_exceptions=True)

    return asyncio.run(go())


def test_concurrent_requests_share_one_flush_and_get_their_own_answers() -> None:
    score = Recorder()
    sizes: list[int] = []
    batcher = _batcher(score, FixedModel, observe=sizes.append)
    requests = [_orders("a", 1), _orders("b", 3), _orders("c", 2)]

    answers = _run(batcher, requests)

    assert answers == [[b"a0"], [b"b0", b"b1", b"b2"], [b"c0", b"c1"]]
    assert score.batches == [["a0", "b0", "b1", "b2", "c0", "c1"]]
    assert sizes == [6]


def test_one_request_alone_is_flushed_at_once() -> None:
    score = Recorder()
    batcher = _batcher(score, FixedModel)

    assert _run(batcher, [_orders("x", 2)]) == [[b"x0", b"x1"]]
    assert _run(batcher, [_orders("y", 1)]) == [[b"y0"]]
    assert score.batches == [["x0", "x1"], ["y0"]]


def test_a_flush_takes_at_most_max_orders_the_rest_goes_next() -> None:
    score = Recorder()
    batcher = _batcher(score, FixedModel, max_orders=4)

    answers = _run(batcher, [_orders("a", 3), _orders("b", 3), _orders("c", 1), _orders("d", 5)])

    assert [len(a) for a in answers] == [3, 3, 1, 5]  # type: ignore[arg-type]  # _run returns object (answers or exceptions); these are lists
    assert [len(b) for b in score.batches] == [3, 4, 5]  # a; b+c; d alone (over the cap)


def test_an_unusable_answer_fails_only_its_request() -> None:
    batcher = _batcher(Recorder(unusable=frozenset({"b1"})), FixedModel)

    ok, bad = _run(batcher, [_orders("a", 2), _orders("b", 2)])

    assert ok == [b"a0", b"a1"]
    assert isinstance(bad, UnusablePrediction) and "'b1'" in str(bad)


def test_a_failed_read_fails_every_request_of_the_flush() -> None:
    batcher = _batcher(Recorder(fail=ConnectionError("redis gone")), FixedModel)

    answers = _run(batcher, [_orders("a", 1), _orders("b", 1)])

    assert all(isinstance(a, ConnectionError) for a in answers)


def test_a_store_that_fails_fails_the_requests_waiting_behind_it_at_once() -> None:
    async def go(unavailable: tuple[type[Exception], ...]) -> tuple[list[object], int]:
        gate = asyncio.Event()
        score = Recorder(fail=TimeoutError("redis hung"), gate=gate)
        batcher = _batcher(score, FixedModel, unavailable=unavailable)
        first = asyncio.ensure_future(batcher.predict(_orders("a", 1)))
        while not score.batches:
            await asyncio.sleep(0)
        behind = [asyncio.ensure_future(batcher.predict(_orders(p, 1))) for p in "bc"]
        await asyncio.sleep(0)
        gate.set()
        answers = await asyncio.gather(first, *behind, return_exceptions=True)
        return list(answers), len(score.batches)

    answers, reads = asyncio.run(go((TimeoutError,)))
    assert all(isinstance(a, TimeoutError) for a in answers) and reads == 1
    answers, reads = asyncio.run(go(()))  # another error: the next flush tries again
    assert all(isinstance(a, TimeoutError) for a in answers) and reads == 2


def test_each_flush_reads_the_model_once() -> None:
    versions = iter(["1", "2", "3"])

    def model() -> ScoringModel:
        m = FixedModel()
        m.version = next(versions)
        return m

    score = Recorder()
    batcher = _batcher(score, model)

    _run(batcher, [_orders("a", 1), _orders("b", 1)])
    _run(batcher, [_orders("c", 1)])

    assert score.models == ["1", "2"]


@pytest.mark.parametrize("n", [1, 1000])
def test_answers_keep_the_order_of_the_request(n: int) -> None:
    batcher = _batcher(Recorder(), FixedModel)
    orders = _orders("o", n)

    (answer,) = _run(batcher, [orders])

    assert answer == [o.order_id.encode() for o in orders]


def test_the_loop_runs_while_a_flush_awaits_its_read_and_arrivals_form_the_next_flush() -> None:
    async def go() -> tuple[list[object], list[str]]:
        gate = asyncio.Event()
        score = Recorder(gate=gate)
        batcher = _batcher(score, FixedModel)
        first = asyncio.ensure_future(batcher.predict(_orders("a", 1)))
        while not score.batches:  # the flush has started its read, and waits on it
            await asyncio.sleep(0)
        later = [asyncio.ensure_future(batcher.predict(_orders(p, 1))) for p in "bc"]
        ran: list[str] = []
        for _ in range(3):  # the loop is free: other work runs meanwhile
            ran.append("other")
            await asyncio.sleep(0)
        assert not first.done() and score.batches == [["a0"]]
        gate.set()
        answers = await asyncio.gather(first, *later)
        return list(answers), [",".join(b) for b in score.batches] + ran

    answers, seen = asyncio.run(go())

    assert answers == [[b"a0"], [b"b0"], [b"c0"]]
    assert seen == ["a0", "b0,c0", "other", "other", "other"]


def test_a_failure_after_scoring_fails_its_requests_and_the_next_flush_runs() -> None:
    def observe(n: int) -> None:
        if n == 2:
            raise RuntimeError("a bug after scoring")

    batcher = _batcher(Recorder(), FixedModel, observe=observe)

    first = _run(batcher, [_orders("a", 1), _orders("b", 1)])
    assert all(isinstance(a, RuntimeError) for a in first)
    assert _run(batcher, [_orders("c", 1)]) == [[b"c0"]]

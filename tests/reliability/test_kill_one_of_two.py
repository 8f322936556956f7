"""Two workers in one group, SIGKILL one mid-stream: the survivor takes its partitions over
(after the session timeout) and every order is predicted; nobody restarts the killed one."""

from __future__ import annotations

import signal

import pytest

from stream_features.settings import Settings
from tests.integration.worker_helpers import TopicReader, WorkerProcess, live_orders
from tests.reliability.readback import await_predicted, drain, expect_predicted
from tests.reliability.services import Spawn
from tests.reliability.tally import Row, tally
from tests.reliability.traffic import stream_orders

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ORDERS = 20_000


def _assigned(worker: WorkerProcess) -> list[list[str]]:
    """The partition lists of each ``partitions assigned`` the worker logged."""
    return [
        line["partitions"]
        for line in worker.log_lines()
        if line.get("msg") == "partitions assigned"
    ]


def test_kill_one_of_two(served: Settings, spawn: Spawn, row: Row) -> None:
    kill_one_of_two(served, spawn, row)


def kill_one_of_two(served: Settings, spawn: Spawn, row: Row) -> None:
    """The scenario on whatever Redis ``served`` names (``test_kill_one_of_two_on_cluster``
    runs it on a Redis Cluster)."""
    orders = live_orders(ORDERS, "r")
    ids = {o.order_id.encode() for o in orders}
    reader = TopicReader(served, served.predictions_topic)
    victim = spawn(served, "victim")
    survivor = spawn(served, "survivor")
    victim.wait_for_log("partitions assigned")
    survivor.wait_for_log("partitions assigned")
    producer = stream_orders(served, orders, pause_s=0.15)
    await_predicted(reader, ids, ORDERS // 4, timeout_s=60)
    assert victim.proc.poll() is None and _assigned(victim)[-1], "the victim owned nothing"
    assert victim.stop(signal.SIGKILL) == -signal.SIGKILL
    read_at_kill = await_predicted(reader, ids, 0, timeout_s=0)
    assert read_at_kill < ORDERS, "the stream was over before the kill"

    producer.join(60)
    expect_predicted(reader, ids, 120, [victim, survivor])
    every = {p for parts in _assigned(survivor) for p in parts}
    assert len(_assigned(survivor)[-1]) == 3 * served.topic_partitions, "no takeover seen"
    assert len(every) == 3 * served.topic_partitions
    assert survivor.stop(signal.SIGTERM) == 0
    counted = tally(ids, (m.key() for m in drain(served, reader, served.predictions_topic)))
    reader.close()
    row.count(ORDERS, counted)
    row.notes["predictions_read_at_kill"] = read_at_kill
    assert counted.lost == 0, f"never predicted: {sorted(counted.missing)[:5]}"
    assert counted.unexpected == 0

"""SIGTERM mid-stream: the worker finishes its batches, commits, exits 0; offsets are right.

Tansu's end offsets can be wrong, so the check counts: once the first worker has exited, the
group's committed offsets must add up to exactly the orders it predicted (all of its work is
committed, nothing beyond it). A second worker in the group then starts where the first
stopped: over both, every order is predicted exactly once.
"""

from __future__ import annotations

import signal

import pytest
from confluent_kafka import Consumer, TopicPartition

from stream_features.kafka_clients import consumer_config
from stream_features.settings import Settings
from tests.integration.worker_helpers import TopicReader, WorkerProcess, live_orders
from tests.reliability.readback import await_predicted, drain, expect_predicted
from tests.reliability.services import Spawn
from tests.reliability.tally import Row, tally
from tests.reliability.traffic import stream_orders

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ORDERS = 20_000


def _committed(settings: Settings) -> int:
    """The group's committed offsets on the orders topic, added up (a fetch, not a join)."""
    consumer = Consumer(consumer_config(settings))
    parts = [TopicPartition(settings.orders_topic, p) for p in range(settings.topic_partitions)]
    committed = consumer.committed(parts, timeout=10)
    consumer.close()
    return sum(max(tp.offset, 0) for tp in committed)


def _stopped(worker: WorkerProcess) -> dict[str, int]:
    lines = [line for line in worker.log_lines() if line.get("msg") == "stream worker stopped"]
    assert len(lines) == 1, "no 'stream worker stopped' line"
    return lines[0]


def test_sigterm(served: Settings, spawn: Spawn, row: Row) -> None:
    orders = live_orders(ORDERS, "t")
    ids = {o.order_id.encode() for o in orders}
    reader = TopicReader(served, served.predictions_topic)
    first = spawn(served, "first")
    first.wait_for_log("partitions assigned")
    producer = stream_orders(served, orders, pause_s=0.15)
    await_predicted(reader, ids, ORDERS // 3, timeout_s=60)
    assert first.stop(signal.SIGTERM) == 0
    stats = _stopped(first)
    assert stats["uncommitted_batches"] == 0 and stats["commits"] > 0

    by_first = tally(ids, (m.key() for m in drain(served, reader, served.predictions_topic)))
    assert by_first.duplicated == 0 and by_first.predicted == stats["predictions"]
    assert by_first.predicted < ORDERS, "the stream was over before the SIGTERM"
    assert _committed(served) == by_first.predicted, "committed offsets ≠ orders predicted"

    second = spawn(served, "second")
    producer.join(60)
    expect_predicted(reader, ids, 120, [first, second])
    assert second.stop(signal.SIGTERM) == 0
    counted = tally(ids, (m.key() for m in drain(served, reader, served.predictions_topic)))
    reader.close()
    row.count(ORDERS, counted)
    row.notes["predicted_by_first"] = by_first.predicted
    assert counted.lost == 0 and counted.unexpected == 0
    assert counted.duplicated == 0, "the second worker read again what the first committed"
    assert _committed(served) == ORDERS

"""A large steady stream through one worker: Redis memory follows the active entities, not the
length of the stream, and every order is predicted.

The load (``steady_records``: 2,000 stores in 6 markets, an order every 0.15 s of event time,
each delivered 20–60 minutes later, supply snapshots) keeps the active entities fixed while
event time moves on by hours, so windows fill, then expire and are pruned. ``used_memory`` is
read once the worker has consumed the first fifth of the stream (80 minutes of event time: the
60-minute windows, with their lateness margin, are full) and again at the end.

The stream is produced as a live one, the producer never more than ``WINDOW`` events ahead of
the worker: this scenario is about memory under a steady stream (a backlog drained with
event-time alignment is tests/integration/test_worker_alignment.py's). 1,000,000 events take
60–110 s here, more than this suite's budget allows one scenario, so CI runs ``EVENTS``;
``RELIABILITY_LARGE_EVENTS=1000000`` runs the million.

This scenario turns off the worker's prediction cache (``ETA_PREDICTION_TTL_S=0``): the cache
keeps one Redis key per prediction for a day by design, which grows with the stream, not with
the entities (docs/reliability.md gives its measured cost).
"""

from __future__ import annotations

import os
import signal
import time

import orjson
import pytest
from confluent_kafka import Producer

from stream_features.kafka_clients import producer_config
from stream_features.settings import Settings
from stream_features.stack import free_port
from tests.integration.worker_helpers import TopicReader
from tests.reliability.readback import drain, metric, wait_until
from tests.reliability.services import FaultStack, Spawn
from tests.reliability.tally import Row, tally
from tests.reliability.traffic import steady_records

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EVENTS = int(os.environ.get("RELIABILITY_LARGE_EVENTS", "300000"))
WINDOW = 1_000
"""Events the producer may be ahead of the worker (plus the half window it produces between
checks): 1,500 events span at most 225 s of event time (0.15 s each before the first deliveries,
half that after), inside the 300 s lateness bound."""
SPACING_S = 0.15  # event time between orders: a fifth of the stream is 75 minutes of it
GROWTH = 1.5
"""used_memory may grow this much from a fifth of the stream to all of it: windows are full by
then and the active entities are the same, so only the last hours' undelivered orders (1%)
and allocator noise remain; memory that grew with the stream would grow about 5x."""


def _consumed(port: int, events: int, timeout_s: float) -> None:
    """Wait until the worker has consumed ``events`` (its events counter says so)."""

    def done() -> bool:
        return metric(port, "eta_stream_events_total") >= events

    wait_until(done, timeout_s, f"the worker consuming {events} events")


def test_large_stream(served: Settings, faults: FaultStack, spawn: Spawn, row: Row) -> None:
    served = served.model_copy(update={"metrics_port": free_port(), "prediction_ttl_s": 0})
    port = served.metrics_port
    topics = {
        "orders": served.orders_topic,
        "deliveries": served.deliveries_topic,
        "dasher-events": served.dasher_events_topic,
    }
    worker = spawn(served, "worker")
    worker.wait_for_log("partitions assigned")
    records = steady_records(EVENTS, spacing_s=SPACING_S)
    producer = Producer({**producer_config(served), "linger.ms": 20})
    ids: set[bytes] = set()
    sent = 0
    memory: dict[str, dict[str, int | float]] = {}
    started = time.monotonic()
    for label, upto in (("fifth", EVENTS // 5), ("all", EVENTS)):
        for kind, key, value in records:
            if sent % (WINDOW // 2) == 0:  # a live stream, not a backlog
                producer.poll(0)
                _consumed(port, sent - WINDOW, timeout_s=60)
            while True:
                try:
                    producer.produce(topics[kind], value, key)
                    break
                except BufferError:
                    producer.poll(0.05)
            if kind == "orders":
                ids.add(orjson.loads(value)["order_id"].encode())
            sent += 1
            if sent == upto:
                break
        assert producer.flush(60) == 0
        _consumed(port, sent, timeout_s=120)
        memory[label] = {
            **faults.redis_memory(),
            "events": sent,
            "late": metric(port, "eta_stream_feature_events_total", outcome="late"),
            "seconds": round(time.monotonic() - started, 1),
        }
    assert worker.stop(signal.SIGTERM) == 0
    reader = TopicReader(served, served.predictions_topic)
    counted = tally(ids, (m.key() for m in drain(served, reader, served.predictions_topic, 120)))
    reader.close()
    row.count(sent, counted)
    row.notes["redis"] = memory
    fifth, everything = memory["fifth"], memory["all"]
    assert counted.lost == 0 and counted.unexpected == 0
    assert everything["late"] == 0, "events dropped as late: the stream was not live-like"
    assert abs(everything["keys"] - fifth["keys"]) <= 0.05 * fifth["keys"], "entities changed"
    assert everything["used_memory"] <= GROWTH * fifth["used_memory"], memory

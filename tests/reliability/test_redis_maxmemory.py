"""Redis at its memory limit: ``maxmemory`` set just under what it holds, ``noeviction``.

What the worker promises: a write-behind Redis refuses (``OOM command not allowed``) is a
feature-store outage like any other: the batch is read again with backoff, nothing is
predicted from it and nothing is committed; the log and ``eta_stream_feature_store_errors``
name the cause (``maxmemory``). Once memory is raised it resumes, and every order is predicted.
The transaction is refused whole (MULTI/EXEC aborts on the queued OOM), so no batch is half
applied. A worker started on a Redis whose policy evicts (``allkeys-lru`` here) warns of it.
"""

from __future__ import annotations

import signal
from datetime import UTC, datetime

import pytest
from confluent_kafka import Consumer, TopicPartition

from stream_features.contract import DeliveryPrediction
from stream_features.kafka_clients import consumer_config
from stream_features.settings import Settings
from stream_features.stack import free_port
from tests.integration.worker_helpers import TopicReader, live_orders, produce_orders
from tests.reliability.readback import drain, expect_predicted, metric, wait_until
from tests.reliability.services import FaultStack, Spawn
from tests.reliability.tally import Row, tally
from tests.reliability.traffic import stream_orders

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BEFORE, DURING = 2000, 4000
CHUNK = 500
MESSAGE = "Redis is at its memory limit (maxmemory)"


def _committed(settings: Settings) -> int:
    """The group's committed offsets on the orders topic, added up."""
    consumer = Consumer(consumer_config(settings))
    parts = [TopicPartition(settings.orders_topic, p) for p in range(settings.topic_partitions)]
    committed = consumer.committed(parts, timeout=10)
    consumer.close()
    return sum(max(tp.offset, 0) for tp in committed)


def test_redis_maxmemory(served: Settings, faults: FaultStack, spawn: Spawn, row: Row) -> None:
    served = served.model_copy(update={"metrics_port": free_port()})
    port = served.metrics_port
    client = faults.client()
    assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"  # eta up's
    # an evicting policy is warned of at start (then put back: the worker reads it only then)
    client.config_set("maxmemory-policy", "allkeys-lru")
    worker = spawn(served, "worker")
    worker.wait_for_log("maxmemory-policy is allkeys-lru", timeout_s=60)
    client.config_set("maxmemory-policy", "noeviction")
    reader = TopicReader(served, served.predictions_topic)
    before = live_orders(BEFORE, "a")
    produce_orders(served, before)
    ids = {o.order_id.encode() for o in before}
    expect_predicted(reader, ids, 60, [worker])
    wait_until(
        lambda: _committed(served) == BEFORE, timeout_s=30, what="the first orders committed"
    )

    # the limit: a little under what Redis holds now, so every write that grows it is refused
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", used - 256 * 1024)
    limited_at = datetime.now(UTC)
    during = live_orders(DURING, "b")
    ids |= {o.order_id.encode() for o in during}
    producer = stream_orders(served, during, chunk=CHUNK, pause_s=0.1)
    worker.wait_for_log(MESSAGE, timeout_s=30, count=3)
    assert _committed(served) == BEFORE, "offsets committed while Redis was full"
    worker.wait_for_log(MESSAGE, timeout_s=30, count=6)  # a few backoffs later (~3 s)
    assert _committed(served) == BEFORE, "offsets committed while Redis was full"
    assert metric(port, "eta_stream_feature_store_errors_total", cause="maxmemory") >= 6
    assert worker.proc.poll() is None, "the worker died of a full Redis"
    wait_until(lambda: producer.done(), timeout_s=60, what="the stream produced")
    producer.join(5)

    client.config_set("maxmemory", 0)  # raised: no limit
    raised_at = datetime.now(UTC)
    expect_predicted(reader, ids, 120, [worker])
    assert worker.stop(signal.SIGTERM) == 0
    worker.wait_for_log("feature store is back")
    messages = drain(served, reader, served.predictions_topic)
    reader.close()
    client.close()

    counted = tally(ids, (m.key() for m in messages))
    row.count(BEFORE + DURING, counted)
    assert counted.lost == 0, f"never predicted: {sorted(counted.missing)[:5]}"
    assert counted.unexpected == 0
    later = {o.order_id.encode() for o in during}
    early = [
        m.key()
        for m in messages
        if m.key() in later
        and DeliveryPrediction.model_validate_json(m.value() or b"").served_at < raised_at
    ]
    row.notes["maxmemory_bytes"] = used - 256 * 1024
    row.notes["full_s"] = round((raised_at - limited_at).total_seconds(), 2)
    row.notes["oom_retries_logged"] = sum(
        MESSAGE in str(line.get("msg")) for line in worker.log_lines()
    )
    assert not early, f"{len(early)} predicted while Redis was full, e.g. {early[:3]}"

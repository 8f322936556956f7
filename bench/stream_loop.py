"""The reference row of ``bench/stream.py``: a trivial consume→produce loop, no features, no model.

It is the floor the stream worker's live latency is held to (issue #16: p99 within 1.5× of
this loop's, in the same run). What it shares with the worker is everything on the wire:

* the clients: built from the worker's own config (``consumer_config``, ``producer_config``,
  ``_latency_tuning``, ``CO_PARTITIONED`` where wiring has it, and the fetch backoff the
  worker adds while it aligns partitions), so the two cannot drift apart
  (``tests/unit/bench/test_bench_stream.py`` compares them with what ``confluent_worker`` builds);
* the subscription (the three source topics), the batch bounds (``consume`` of
  ``batch_max_events`` or ``batch_max_wait_ms``), ``producer.poll(0)`` once per batch;
* at-least-once: a batch's offsets are committed, asynchronously every
  ``commit_interval_ms``, once the broker has acknowledged all of its answers.

What it leaves out is the worker's own work: per order record it produces one small answer,
keyed by order id, ``{"order_id", "created_at", "served_at"}`` (``created_at`` copied from
the order, ``served_at`` the batch's wall clock), which the bench's latency reader parses as
it parses a prediction; other records are only committed. No cap on batches in flight (the
worker waits when more than ``max_inflight_batches`` are unacknowledged).

Run by ``bench/stream.py`` as its own process with the worker's ``ETA_*`` environment;
SIGTERM stops it after a flush and a last commit.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from datetime import UTC, datetime
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from predictor.engines import wiring
from predictor.engines.options import engine_options
from predictor.serving.commits import CommitTracker, offset_span
from stream_features.kafka_clients import consumer_config, producer_config
from stream_features.settings import Settings

__all__ = ["answer", "client_configs", "main", "run"]


def client_configs(settings: Settings) -> tuple[dict[str, Any], dict[str, Any]]:
    """The worker's consumer and producer config (without its ``on_commit`` callback)."""
    consumer_tuning, producer_tuning = wiring._latency_tuning(settings)
    consumer = {
        **getattr(wiring, "CO_PARTITIONED", {}),
        **consumer_config(settings),
        **consumer_tuning,
    }
    if settings.align_margin_s > 0:  # as ConfluentWorker does when it aligns partitions
        consumer = {"fetch.queue.backoff.ms": 20, **consumer}
    producer = producer_config(settings, writes=wiring.WORKER_WRITES)
    return consumer, {**producer, **producer_tuning}


def answer(order: bytes, served_at: str) -> tuple[bytes, bytes]:
    """Key and value answering one order record.

    >>> answer(b'{"order_id": "o1", "created_at": "2026-01-01T00:00:00Z"}', "T")
    (b'o1', b'{"order_id":"o1","created_at":"2026-01-01T00:00:00Z","served_at":"T"}')
    """
    fields = orjson.loads(order)
    order_id = fields["order_id"]
    value = {"order_id": order_id, "created_at": fields["created_at"], "served_at": served_at}
    return order_id.encode(), orjson.dumps(value)


def run(settings: Settings, stop: threading.Event) -> int:
    """Consume, answer, commit until ``stop``; returns the orders answered."""
    options = engine_options(settings)
    consumer_conf, producer_conf = client_configs(settings)
    consumer = Consumer(consumer_conf)
    producer = Producer(producer_conf)
    consumer.subscribe(options.source_topics)
    tracker = CommitTracker()
    to_commit: dict[tuple[str, int], int] = {}
    last_commit = time.monotonic()
    answered = 0

    def commit(asynchronous: bool) -> None:
        nonlocal last_commit
        to_commit.update(tracker.take_committable())
        last_commit = time.monotonic()
        if to_commit:
            offsets = [TopicPartition(t, p, o) for (t, p), o in to_commit.items()]
            to_commit.clear()
            with contextlib.suppress(KafkaException):  # a rebalance: the next owner reads again
                if asynchronous:  # two calls: the client's stubs type each mode apart
                    consumer.commit(offsets=offsets)
                else:
                    consumer.commit(offsets=offsets, asynchronous=False)

    while not stop.is_set():
        messages = consumer.consume(options.batch_max_events, options.batch_max_wait_ms / 1e3)
        records = [m for m in messages if m.error() is None]
        if records:
            served_at = datetime.now(UTC).isoformat()
            orders = [m for m in records if m.topic() == options.orders_topic]
            positions = [(m.topic() or "", m.partition() or 0, m.offset() or 0) for m in records]
            batch = tracker.open(*offset_span(positions), pending=len(orders))
            for m in orders:
                key, value = answer(m.value() or b"{}", served_at)
                while True:
                    try:
                        producer.produce(
                            options.predictions_topic, value, key, on_delivery=batch.on_delivery
                        )
                        break
                    except BufferError:  # the local queue is full: let deliveries drain it
                        producer.poll(0.05)
            answered += len(orders)
        producer.poll(0)
        if time.monotonic() - last_commit >= options.commit_interval_ms / 1e3:
            commit(asynchronous=True)
    producer.flush(options.shutdown_timeout_s)
    commit(asynchronous=False)
    consumer.close()
    return answered


def main() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    answered = run(Settings(), stop)
    print(f"trivial loop: {answered} orders answered", flush=True)


if __name__ == "__main__":
    main()

"""The naive baseline of the benches: what one writes without a framework, one record at a time.

One loop for both benches that compare against it: poll one record, answer it with one Redis
round trip, produce the answer, go on. The answer is the bench's own:

- ``bench.peers`` (``naive``, variant ``per-event``): read the store's 10 minute-buckets
  ending with the order's and count the order in its bucket in one pipelined round trip,
  produce ``{"order_id", "count", "at_ms"}`` (``peers_check``), let the consumer auto-commit.
  Started with the peer contenders' options (``peers_loop``).
- ``bench.stream`` (engine ``naive``, ``--eta``): the worker's pipeline on the one record (one
  Redis round trip, one predict), its prediction or dead letter produced, flushed, and the
  record's offset committed. Reads the worker's ``ETA_*`` settings.

Run by those benches as its own process (``python -m bench.naive``); SIGTERM stops it after a
flush.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import time
from collections.abc import Callable

import orjson
import redis
from confluent_kafka import Consumer, KafkaException, Message, Producer

from bench.peers_check import WINDOW_BUCKETS, bucket_of
from bench.peers_loop import run_loop

__all__ = ["count_answer", "eta_worker", "main", "peers_worker", "per_event"]

Answer = Callable[[Message], list[tuple[str, bytes, bytes | None]]]  # (topic, value, key)

_TTL_S = 2 * 3600  # a store's buckets live this long after its last order


def per_event(
    consumer: Consumer,
    producer: Producer,
    answer: Answer,
    stop: threading.Event,
    after: Callable[[Message], None] = lambda _msg: None,
) -> int:
    """Poll one record at a time until ``stop``, produce its answers, call ``after`` with it;
    returns the records answered."""
    answered = 0
    while not stop.is_set():
        msg = consumer.poll(0.1)
        if msg is None or msg.error() is not None:
            continue
        for topic, value, key in answer(msg):
            while True:
                try:
                    producer.produce(topic, value, key)
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.poll(0)
        after(msg)
        answered += 1
    producer.flush(30)
    consumer.close()
    return answered


def count_answer(client: redis.Redis, output: str) -> Answer:
    """The peer bench's answer: the store's orders in the window, one pipelined round trip."""

    def answer(msg: Message) -> list[tuple[str, bytes, bytes | None]]:
        bucket = bucket_of(msg.timestamp()[1])
        key = b"n:" + (msg.key() or b"")
        pipe = client.pipeline(transaction=False)
        pipe.hmget(key, list(range(bucket - WINDOW_BUCKETS + 1, bucket + 1)))
        pipe.hincrby(key, str(bucket), 1)
        pipe.expire(key, _TTL_S)
        values, _, _ = pipe.execute()
        count = sum(int(v) for v in values if v is not None)
        order_id = orjson.loads(msg.value() or b"{}")["order_id"]
        out = {"order_id": order_id, "count": count, "at_ms": time.time_ns() // 1_000_000}
        return [(output, orjson.dumps(out), msg.key())]

    return answer


def peers_worker(args: argparse.Namespace, stop: threading.Event) -> int:
    """The peer bench's contender: its options from ``peers_loop``, auto-committed."""
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            "fetch.wait.max.ms": 10,  # as every librdkafka client here on Tansu
        }
    )
    producer = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 5})
    consumer.subscribe([args.input])
    answer = count_answer(redis.Redis.from_url(args.redis_url), args.output)
    return per_event(consumer, producer, answer, stop)


def eta_worker(stop: threading.Event) -> int:
    """The stream bench's engine ``naive``: the worker's pipeline one record at a time."""
    from predictor.engines.options import pipeline_config
    from predictor.engines.wiring import redis_features
    from predictor.models.compiled import with_scoring
    from predictor.models.registry import Registry
    from predictor.serving.pipeline import process_batch
    from stream_features.kafka_clients import consumer_config, producer_config
    from stream_features.settings import Settings

    settings = Settings()
    registry = Registry(settings.registry_dir)
    version = registry.resolve(settings.model_name, settings.serve_stage)
    model = with_scoring(registry.load(settings.model_name, version), settings.scoring)
    features = redis_features(settings, settings.redis_url_value() or "")
    config = pipeline_config(settings)
    consumer = Consumer({**consumer_config(settings), "fetch.wait.max.ms": 10})
    producer = Producer(producer_config(settings))
    consumer.subscribe(
        [settings.orders_topic, settings.dasher_events_topic, settings.deliveries_topic]
    )

    def answer(msg: Message) -> list[tuple[str, bytes, bytes | None]]:
        now_ms = time.time_ns() // 1_000_000
        result = process_batch([msg], features, model, now_ms=now_ms, config=config)
        return [(settings.predictions_topic, p.value, p.key) for p in result.predictions] + [
            (settings.dlq_topic, d.value, d.key) for d in result.dead_letters
        ]

    def flush_and_commit(msg: Message) -> None:
        producer.flush()
        with contextlib.suppress(KafkaException):
            consumer.commit(message=msg, asynchronous=True)

    return per_event(consumer, producer, answer, stop, flush_and_commit)


def main() -> None:
    if sys.argv[1:] == ["--eta"]:
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        eta_worker(stop)
        return
    run_loop(__doc__ or "", peers_worker, ("per-event",), needs_redis=True)


if __name__ == "__main__":
    main()

"""Naive contender of the peer benchmark: confluent-kafka and one Redis round trip per order.

What one writes without a framework: poll a record, one pipelined round trip to Redis (read
the store's 10 minute-buckets ending with the order's, then count the order in its bucket),
produce the answer, let the consumer auto-commit. Output per order as the other peers:
``{"order_id", "count", "at_ms"}`` (``peers_check``). Run by ``bench/peers.py`` as its own
process; SIGTERM stops it after a flush.
"""

from __future__ import annotations

import argparse
import threading
import time

import orjson
import redis
from confluent_kafka import Consumer, Producer

from bench.peers_check import WINDOW_BUCKETS, bucket_of
from bench.peers_loop import run_loop

__all__ = ["main", "run"]

_TTL_S = 2 * 3600  # a store's buckets live this long after its last order


def run(args: argparse.Namespace, stop: threading.Event) -> int:
    """Consume until ``stop``; returns the orders answered."""
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
    client = redis.Redis.from_url(args.redis_url)
    consumer.subscribe([args.input])
    answered = 0
    while not stop.is_set():
        msg = consumer.poll(0.1)
        if msg is None or msg.error() is not None:
            continue
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
        while True:
            try:
                producer.produce(args.output, orjson.dumps(out), msg.key())
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
        answered += 1
    producer.flush(30)
    consumer.close()
    return answered


def main() -> None:
    run_loop(__doc__ or "", run, ("per-event",), needs_redis=True)


if __name__ == "__main__":
    main()

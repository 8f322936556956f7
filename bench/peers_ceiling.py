"""Reference row of the peer benchmark: the fastest honest one-process Python worker here.

Not a peer and not a tool anyone would pick: confluent-kafka read in batches, each store's
minute buckets in a dict of this process (no Redis, no changelog, no committed offsets: a
restart replays the topic from the start and rebuilds the dict), the answer produced with a
lingering producer. What it costs is what any Python worker must pay on this machine to
consume, parse and produce through this broker, so its orders/s is the ceiling the peers and
etastream are held against. Its answers are checked like everyone's (``peers_check``): event
time is the record's timestamp, and an order's count is its store's orders in the 10 minute
buckets ending with its own, read before it. Run by ``bench/peers.py`` as its own process;
SIGTERM stops it after a flush.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer

from bench.peers_check import WINDOW_BUCKETS, bucket_of
from bench.peers_loop import run_loop

__all__ = ["StoreCounts", "main", "run"]

_BATCH = 10_000  # records per consume(): one Python call for many records


class StoreCounts:
    """Per store, its orders per minute bucket, and the window sum of its latest bucket.

    Buckets are never evicted (the oracle forgets nothing either; a product would have to
    evict, and then decide what a late record sees). The cached sum is of the buckets
    ``B-9 .. B`` of the store's last bucket ``B``; only that store's orders change them, so it
    stays exact until the store's next order falls in another bucket, which sums afresh.

    >>> c = StoreCounts()
    >>> [c.count_then_add(b"s", b) for b in (0, 0, 9, 10, 10, 5, 11, 20)]
    [0, 1, 2, 1, 2, 2, 4, 1]
    >>> c.count_then_add(b"t", 10)
    0
    """

    def __init__(self) -> None:
        # store -> [its last bucket, the window sum ending there, {bucket: orders}]
        self._stores: dict[bytes, list[Any]] = {}

    def count_then_add(self, store: bytes, bucket: int) -> int:
        """The store's orders in the 10 buckets ending with ``bucket``; then counts this one."""
        st = self._stores.get(store)
        if st is None:
            self._stores[store] = [bucket, 1, {bucket: 1}]
            return 0
        buckets: dict[int, int] = st[2]
        if st[0] == bucket:
            count: int = st[1]
        else:
            get = buckets.get
            count = sum([get(b, 0) for b in range(bucket - WINDOW_BUCKETS + 1, bucket + 1)])
            st[0] = bucket
        st[1] = count + 1
        buckets[bucket] = buckets.get(bucket, 0) + 1
        return count


def _report_failure(err: Any, _msg: Any) -> None:
    """Only failed deliveries come here (``delivery.report.only.error``): say so, loudly."""
    print(f"delivery failed: {err}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace, stop: threading.Event) -> int:
    """Consume until ``stop``; returns the orders answered."""
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,  # the state dies with the process: replay, not resume
            "session.timeout.ms": 6000,
            "fetch.wait.max.ms": 10,  # as every librdkafka client here on Tansu
            # librdkafka >= 2.4 postpones a partition's next fetch by this (1 s by default)
            # while its local queue is over queued.min.messages; this loop empties such a
            # queue in a fraction of that and then sat idle ~0.5 s of a ~1.5 s drain
            "fetch.queue.backoff.ms": 10,
        }
    )
    producer = Producer(
        {
            "bootstrap.servers": args.bootstrap,
            "linger.ms": 5,
            "delivery.report.only.error": True,
            "on_delivery": _report_failure,
        }
    )
    consumer.subscribe([args.input])
    counts = StoreCounts()
    count_then_add, produce, out_topic = counts.count_then_add, producer.produce, args.output
    answered = 0
    while not stop.is_set():
        msgs = consumer.consume(num_messages=_BATCH, timeout=0.1)
        if not msgs:
            continue
        at_ms = time.time_ns() // 1_000_000  # when this batch is handled, as the peers stamp
        for msg in msgs:
            if msg.error() is not None:
                print(f"consume error: {msg.error()}", file=sys.stderr, flush=True)
                continue
            key = msg.key() or b""
            count = count_then_add(key, bucket_of(msg.timestamp()[1]))
            order_id = orjson.loads(msg.value() or b"{}")["order_id"]
            value = orjson.dumps({"order_id": order_id, "count": count, "at_ms": at_ms})
            while True:
                try:
                    produce(out_topic, value, key)
                    break
                except BufferError:  # local queue full: let it drain
                    producer.poll(0.05)
            answered += 1
        producer.poll(0)
    producer.flush(30)
    consumer.close()
    return answered


def main() -> None:
    run_loop(__doc__ or "", run, ("dict",), needs_redis=False)


if __name__ == "__main__":
    main()

"""faust-streaming contender of the peer benchmark: the store's 10-minute order count per order.

Run by ``bench/peers.py`` as its own process (``python -m bench.peers_faust --variant ...``).
Output per order as the other peers: ``{"order_id", "count", "at_ms"}`` (see ``peers_check``
for what ``count`` must be). Event time is the record's timestamp (the bench sets it to
``created_at``), i.e. ``relative_to_stream``.

* ``table``: a plain Table, per store the counts of its last 10 minute-buckets.
* ``hopping``: a hopping window table (10 min, step 1 min) with ``expires=None``. Faust expires
  windows against the wall clock (``Table._del_old_keys`` compares window ends with
  ``time.time()``), so on historical event times any ``expires`` shorter than the data's age
  deletes live windows every ``table_cleanup_interval``; None keeps every window.
* ``hopping-expires``: the same with ``expires=15 min``, what one would set for live data; on
  this input it shows the wall-clock expiry (its counts are checked like every other).
"""

from __future__ import annotations

import argparse
import time
from datetime import timedelta
from typing import Any

import faust
import orjson

from bench.peers_check import WINDOW_BUCKETS, bucket_of, count_then_add

__all__ = ["build", "main"]

_OWN_WINDOW_BACK = timedelta(minutes=WINDOW_BUCKETS - 1)  # delta() to the window ending now


def _out(order_id: str, count: int) -> bytes:
    return orjson.dumps({"order_id": order_id, "count": count, "at_ms": time.time_ns() // 10**6})


def build(args: argparse.Namespace) -> faust.App:
    """The faust app for ``args.variant``."""
    app = faust.App(
        args.group,
        broker=f"kafka://{args.bootstrap}",
        store="memory://",  # the tables live in memory; datadir only keeps faust's own files
        datadir=args.state_dir,
        autodiscover=False,
        web_enabled=False,
        topic_partitions=4,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
    )
    orders = app.topic(args.input, key_serializer="raw", value_serializer="raw")
    out = app.topic(args.output, key_serializer="raw", value_serializer="raw")

    if args.variant == "table":
        buckets = app.Table("store-buckets", default=list, partitions=4)

        async def count_table(stream: Any) -> None:
            async for event in stream.events():
                msg = event.message
                bucket = bucket_of(round(msg.timestamp * 1000))
                store = msg.key.decode()
                buckets[store], count = count_then_add(buckets[store], bucket)
                order_id = orjson.loads(msg.value)["order_id"]
                await out.send(key=msg.key, value=_out(order_id, count))

        app.agent(orders, name=f"{args.group}-count")(count_table)
        return app

    expires = timedelta(minutes=15) if args.variant == "hopping-expires" else None
    windows = app.Table("store-orders-10m", default=int, partitions=4).hopping(
        timedelta(minutes=10), timedelta(minutes=1), expires=expires
    )
    counts = windows.relative_to_stream()

    async def count_hopping(stream: Any) -> None:
        async for event in stream.events():
            msg = event.message
            store = msg.key.decode()
            counts[store] += 1
            count = counts[store].delta(_OWN_WINDOW_BACK) - 1  # its window holds it: minus 1
            order_id = orjson.loads(msg.value)["order_id"]
            await out.send(key=msg.key, value=_out(order_id, count))

    app.agent(orders, name=f"{args.group}-count")(count_hopping)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", choices=("table", "hopping", "hopping-expires"), required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--state-dir", required=True)
    app = build(parser.parse_args())
    faust.Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()

"""Quix Streams contender of the peer benchmark: the store's 10-minute order count per order.

Run by ``bench/peers.py`` as its own process (``python -m bench.peers_quix --variant ...``).
Each order's output is ``{"order_id", "count", "at_ms"}`` on the output topic, ``count`` being
the store's orders in the 10 one-minute buckets ending with the order's own, before it
(``peers_check``), and ``at_ms`` the wall clock when Quix handled it. Event time is the
record's timestamp, which the bench sets to ``created_at``.

* ``window``: Quix's window API, a hopping window of 10 min stepping by 1 min (aligned to the
  minute, grace 0) with ``Count`` and ``Last``; ``.current()`` emits the 10 windows an order
  updates, and the one ending with its bucket is kept (its count includes the order: minus 1).
* ``apply``: a stateful ``apply`` keeping per store the counts of its last 10 minute-buckets.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from quixstreams import Application
from quixstreams.dataframe.windows.aggregations import Count, Last
from quixstreams.state import State

from bench.peers_check import bucket_of, count_then_add, own_window_start_ms

__all__ = ["build", "main"]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _slim(value: dict[str, Any], key: Any, timestamp: int, headers: Any) -> dict[str, Any]:
    return {"order_id": value["order_id"], "ts": timestamp}


def _own_window(window: dict[str, Any]) -> bool:
    return bool(window["start"] == own_window_start_ms(window["ts"]))


def _from_window(window: dict[str, Any]) -> dict[str, Any]:
    return {"order_id": window["order_id"], "count": window["count"] - 1, "at_ms": _now_ms()}


def _count_before(
    value: dict[str, Any], key: Any, timestamp: int, headers: Any, state: State[str, Any]
) -> dict[str, Any]:
    """Counts of the store's last buckets as ``[[bucket, n], ...]``, oldest first."""
    bucket = bucket_of(timestamp)
    kept, count = count_then_add(state.get("w", []), bucket)
    state.set("w", kept)
    return {"order_id": value["order_id"], "count": count, "at_ms": _now_ms()}


def build(args: argparse.Namespace) -> Application:
    """The Quix application for ``args.variant``."""
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=Path(args.state_dir),
        # what every librdkafka client gets here: Tansu answers long polls late, and joins
        # a group in ~3 s with a 6 s session timeout (as etastream's worker sets it)
        consumer_extra_config={"fetch.wait.max.ms": 10, "session.timeout.ms": 6000},
        loglevel="WARNING",
    )
    orders = app.topic(args.input, value_deserializer="json", key_deserializer="str")
    out = app.topic(args.output, value_serializer="json", key_serializer="str")
    sdf = app.dataframe(orders)
    if args.variant == "window":
        sdf = sdf.apply(_slim, metadata=True)
        windows = sdf.hopping_window(duration_ms=600_000, step_ms=60_000)
        sdf = windows.agg(count=Count(), order_id=Last("order_id"), ts=Last("ts")).current()
        sdf = sdf.filter(_own_window).apply(_from_window)
    else:
        sdf = sdf.apply(_count_before, stateful=True, metadata=True)
    sdf.to_topic(out)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", choices=("window", "apply"), required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--state-dir", required=True)
    build(parser.parse_args()).run()


if __name__ == "__main__":
    main()

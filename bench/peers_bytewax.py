"""Bytewax contender of the peer benchmark: the store's 10-minute order count per order.

Run by ``bench/peers.py`` as its own process (``python -m bench.peers_bytewax --variant ...``):
one Bytewax worker (``cli_main``, what ``python -m bytewax.run`` calls) on Bytewax's Kafka
connectors. ``kop.input`` reads the topic's partitions from the beginning, ``key_on`` keys each
record by store (its Kafka key), a ``stateful_map`` keeps per store the counts of its last 10
minute-buckets and answers the order, and ``kop.output`` produces ``{"order_id", "count",
"at_ms"}`` as the other peers (``peers_check`` says what ``count`` must be; ``at_ms`` is the
wall clock when Bytewax handled the order). Event time is the record's timestamp, which the
bench sets to ``created_at``.

The input is built with ``tail=False``: each partition stops at its end
(``enable.partition.eof``), so once the backlog the bench loaded is read the dataflow
completes, the sink flushes and the process exits by itself with code 0. SIGTERM stops it
sooner, as Ctrl-C does (a KeyboardInterrupt aborts the dataflow: code 1). Bytewax assigns
the partitions itself, with no consumer group (``--group`` is unused), and keeps its offsets
only in its recovery store.

* ``stateful_map``: no recovery. The state lives in the process only.
* ``recovery``: the same flow with Bytewax's recovery. ``--state-dir`` holds one SQLite
  recovery partition, set up as ``python -m bytewax.recovery <dir> 1`` does
  (``init_db_dir``). At the end of every epoch (``--epoch-s``, 1 s, for both variants) Bytewax
  snapshots the state of each store changed in it and the input's offsets.

Bytewax's window API is not used. Its windows answer when they close, not per order, and its
``EventClock`` adds the wall time since the newest event to the watermark, so on a backlog it
drops orders as late unless ``wait_for_system_duration`` covers the whole backlog.
"""

from __future__ import annotations

import argparse
import signal
import time
from datetime import timedelta
from pathlib import Path
from typing import TypeAlias

import orjson
from bytewax import operators as op
from bytewax.connectors.kafka import KafkaSinkMessage, KafkaSourceMessage
from bytewax.connectors.kafka import operators as kop
from bytewax.dataflow import Dataflow, Stream
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main

from bench.peers_check import bucket_of, count_then_add

__all__ = ["answers", "build", "count_then_add", "main"]

Buckets = list[list[int]]  # [[bucket, orders], ...], oldest first
# explicit aliases: mypy reads them as types also where bytewax (the bench extra) is missing
Order: TypeAlias = KafkaSourceMessage[bytes | None, bytes | None]  # as the Kafka source types
Answer: TypeAlias = KafkaSinkMessage[bytes | None, bytes]


def _answer(state: Buckets | None, msg: Order) -> tuple[Buckets, Answer]:
    assert msg.timestamp is not None  # the bench sets every record's timestamp
    kept, count = count_then_add(state or [], bucket_of(msg.timestamp[1]))
    order_id = orjson.loads(msg.value or b"{}")["order_id"]
    out = {"order_id": order_id, "count": count, "at_ms": time.time_ns() // 1_000_000}
    return kept, KafkaSinkMessage(msg.key, orjson.dumps(out))


def answers(orders: Stream[Order]) -> Stream[Answer]:
    """Keyed by store, one answer per order from a ``stateful_map`` over its minute buckets."""
    by_store = op.key_on("by_store", orders, lambda msg: (msg.key or b"").decode())
    counted = op.stateful_map("count_10m", by_store, _answer)
    return op.key_rm("unkey", counted)


def build(args: argparse.Namespace) -> Dataflow:
    """The dataflow: the orders topic in, the answers topic out."""
    flow = Dataflow(args.group)
    brokers = [args.bootstrap]
    # what every librdkafka client gets here: Tansu answers long polls late (the source's
    # AdminClient, which lists the partitions, warns that it ignores this consumer property)
    config = {"fetch.wait.max.ms": "10"}
    kin = kop.input(
        "orders", flow, brokers=brokers, topics=[args.input], tail=False, add_config=config
    )
    op.raises("crash_on_error", kin.errs)
    kop.output("answers", answers(kin.oks), brokers=brokers, topic=args.output)
    return flow


def _recovery(state_dir: Path) -> RecoveryConfig:
    """The recovery store in ``state_dir``, one partition made on first use."""
    if not state_dir.exists() or not any(state_dir.iterdir()):
        state_dir.mkdir(parents=True, exist_ok=True)
        init_db_dir(state_dir, 1)
    return RecoveryConfig(state_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", choices=("stateful_map", "recovery"), required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--group", required=True)  # the dataflow's name: Bytewax has no group
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--epoch-s", type=float, default=1.0, help="snapshot interval")
    args = parser.parse_args()
    # Bytewax stops cleanly on KeyboardInterrupt; Python's default SIGTERM would kill it
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    recovery = _recovery(Path(args.state_dir)) if args.variant == "recovery" else None
    cli_main(build(args), epoch_interval=timedelta(seconds=args.epoch_s), recovery_config=recovery)


if __name__ == "__main__":
    main()

"""Drain rate of old events behind live ones (issue #22, bug 1), by the worker's fetch wait.

On the embedded stack (Tansu + redis-server, started here), for each ``--fetch-waits`` value
(librdkafka's ``fetch.wait.max.ms`` of the worker; 50 ms is the worker's default, 10 ms what it
used before), on fresh topics of ``--partitions`` partitions: ``--live-orders`` orders stamped
now are produced in large record batches, then a week-old history of the same stores and
markets (``--old-orders`` orders and ``--old-snapshots`` supply snapshots) in record batches of
two, as a paced ``eta produce replay`` writes them (``bench/loads.py``). A confluent
worker (in this process, the whole pipeline with a linear stand-in model) then drains it.
Orders/s and events/s run from the first record consumed to the last; a run that has not
consumed everything after ``--limit-s`` is reported as such, with what it had done. The old
events are late by design (their stores and markets applied the live ones first): counted.

    python -m bench.backlog                           # 10 ms against 50 ms
    python -m bench.backlog --fetch-waits 50 --out /tmp/backlog.json   # a quick check

Prints a table and writes ``bench/results/backlog.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from stream_features.settings import Settings

RESULTS = Path(__file__).parent / "results" / "backlog.json"
_console = Console()


def run_one(base: Settings, fetch_wait_ms: int, args: argparse.Namespace) -> dict[str, Any]:
    """Produce the backlog on fresh topics and drain it with one worker; the measurements."""
    from bench.loads import LinearModel, live_orders, old_records, produce, produce_in_small_batches
    from predictor.engines.wiring import confluent_worker, redis_features
    from predictor.serving.metrics import StreamMetrics
    from stream_features.contract import encode
    from stream_features.kafka_clients import ensure_topics

    tag = uuid.uuid4().hex[:8]
    settings = base.model_copy(
        update={
            "topic_partitions": args.partitions,
            "orders_topic": f"orders-{tag}",
            "dasher_events_topic": f"dasher-events-{tag}",
            "deliveries_topic": f"deliveries-{tag}",
            "predictions_topic": f"predictions-{tag}",
            "dlq_topic": f"dlq-{tag}",
            "consumer_group": f"backlog-{tag}",
            "kafka": {**base.kafka, "fetch_wait_max_ms": str(fetch_wait_ms)},
        }
    )
    ensure_topics(settings)
    live = live_orders(args.live_orders, "live-", stores=40)
    sent = produce(
        settings, ((settings.orders_topic, o.store_id.encode(), encode(o)) for o in live)
    )
    old = old_records(settings, args.old_orders, args.old_snapshots)
    sent += produce_in_small_batches(settings, old)
    orders = args.live_orders + args.old_orders

    metrics = StreamMetrics()
    sample = metrics.registry.get_sample_value
    topics = (settings.orders_topic, settings.dasher_events_topic, settings.deliveries_topic)
    features = redis_features(settings, settings.redis_url_value() or "", f"{tag}:")
    worker = confluent_worker(settings, features, lambda: LinearModel(), metrics)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    load_before = os.getloadavg()[0]
    thread.start()
    started = time.monotonic()
    first: float | None = None
    consumed = 0.0
    while consumed < sent and time.monotonic() - started < args.limit_s:
        consumed = sum(sample("eta_stream_events_total", {"topic": t}) or 0 for t in topics)
        if consumed and first is None:
            first = time.monotonic()
        time.sleep(0.05)
    last = time.monotonic()
    load_after = os.getloadavg()[0]
    stop.set()
    thread.join(60)
    span = last - (first or last)
    predicted = sample("eta_stream_predictions_total") or 0.0
    return {
        "fetch_wait_ms": fetch_wait_ms,
        "records": sent,
        "orders": orders,
        "consumed": int(consumed),
        "predicted": int(predicted),
        "done": consumed >= sent,
        "seconds": round(span, 2),
        "events_per_s": round(consumed / span) if span else None,
        "orders_per_s": round(predicted / span) if span else None,
        "late": int(sample("eta_stream_feature_events_total", {"outcome": "late"}) or 0),
        "paused_at_end": int(sample("eta_stream_paused_partitions") or 0),
        "load_average": [round(load_before, 2), round(load_after, 2)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fetch-waits", default="10,50", help="fetch.wait.max.ms values, ms")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--live-orders", type=int, default=5_000)
    parser.add_argument("--old-orders", type=int, default=10_000)
    parser.add_argument("--old-snapshots", type=int, default=40_000)
    parser.add_argument("--limit-s", type=float, default=90.0, help="give up on a run after (s)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the JSON")
    args = parser.parse_args()
    waits = [int(w) for w in args.fetch_waits.split(",")]

    from stream_features.stack import start_stack

    runs = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        start_stack(Settings(data_dir=Path(tmp) / "stack")) as urls,
    ):
        base = Settings(
            kafka_bootstrap_servers=urls.kafka_bootstrap_servers,
            redis_url=urls.redis_url,
            data_dir=Path(tmp),
        )
        for wait in waits:
            runs.append(run_one(base, wait, args))
            _console.print(runs[-1])
    table = Table(title="old events behind live ones, small record batches: the worker drains")
    for column in ("fetch.wait.max.ms", "consumed", "seconds", "orders/s", "events/s", "late"):
        table.add_column(column, justify="right")
    table.add_column("load average")
    for r in runs:
        done = "" if r["done"] else f" of {r['records']:,} (not done)"
        table.add_row(
            f"{r['fetch_wait_ms']} ms",
            f"{r['consumed']:,}{done}",
            f"{r['seconds']:.1f}",
            f"{r['orders_per_s'] or 0:,}",
            f"{r['events_per_s'] or 0:,}",
            f"{r['late']:,}",
            " → ".join(f"{x:.1f}" for x in r["load_average"]),
        )
    _console.print(table)
    payload = {
        "bench": "backlog",
        "at": datetime.now(UTC).isoformat(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "args": {k: v for k, v in vars(args).items() if k != "out"},
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(payload, option=orjson.OPT_INDENT_2))
    _console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""The stream worker's core in-process, without Kafka: where the feature update runs.

The confluent engine decodes batch k+1 while batch k's feature update (the batch applied to the
partition state in memory, then written behind to Redis) runs on a thread of its own, then
scores batch k. This bench runs that pipeline (``decode_batch``, the Redis feature source,
``score_batch`` with the predictions encoded) on a steady load against a real redis-server
started here, two ways, alternating, ``--rounds`` times each:

- ``on its thread``: the update runs on the feature thread, as the engine does, so the
  write-behind round trip overlaps the next batch's decoding;
- ``inline``: the main thread runs decode, update and score one after the other.

With no broker in the loop it shows what the overlap is worth now that the update is mostly
Python (it holds the GIL the decoder needs). Reported per mode: the median orders/s, Redis's
command time (``INFO commandstats``) and how long the main thread waited for rows.

    python -m bench.pipeline                 # ~1 minute here
    python -m bench.pipeline --events 300000 --rounds 5

Prints a table and writes ``bench/results/pipeline.json``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import redis
from rich.console import Console
from rich.table import Table

from bench.loads import steady_load
from predictor.serving.pipeline import DecodedBatch, PipelineConfig, decode_batch, score_batch
from predictor.serving.records import RawRecord
from stream_features.contract import encode
from stream_features.definitions import feature_names
from stream_features.redis_windows import RedisFeatureSource
from stream_features.settings import Settings
from stream_features.stack import start_stack

RESULTS = Path(__file__).parent / "results" / "pipeline.json"
TOPICS = {"OrderCreated": "orders", "OrderDelivered": "deliveries"}
MODES = ("on its thread", "inline")


class _Model:
    """A stand-in for the model (a dot product): scoring is ~1% of the worker's time."""

    name, version = "bench", "1"

    def __init__(self) -> None:
        self._w = np.linspace(0.1, 1.0, len(feature_names()))

    def predict(self, values: npt.NDArray[np.float64], /) -> npt.NDArray[np.float64]:
        return np.asarray(1800.0 + 0.0 * (np.nan_to_num(values) @ self._w), dtype=np.float64)


def _records(events: int) -> list[RawRecord]:
    load = steady_load(events, spacing_s=0.045)  # 200k orders span ~2.5 h, as in bench/peers.py
    return [
        RawRecord(encode(e), key=b"k", topic=TOPICS.get(e.type, "dasher-events"), offset=i)
        for i, e in enumerate(load)
    ]


def _run(client: redis.Redis, records: list[RawRecord], mode: str, prefix: str) -> dict[str, Any]:
    source = RedisFeatureSource(client, key_prefix=prefix)
    config = PipelineConfig(include_features=True)
    model = _Model()
    pool = ThreadPoolExecutor(1, thread_name_prefix="features")
    pending: list[tuple[DecodedBatch, Future[Any], Callable[[Any], Any]]] = []
    waited = 0.0
    predictions = 0

    def start(batch: list[RawRecord]) -> None:
        decoded = decode_batch(batch, now_ms=time.time_ns() // 1_000_000, config=config)
        if mode == "inline":
            done: Future[Any] = Future()
            done.set_result(source.update_and_read(decoded.events, decoded.partitions))
            pending.append((decoded, done, lambda rows: rows))
        else:
            future = pool.submit(source.update_and_read, decoded.events, decoded.partitions)
            pending.append((decoded, future, lambda rows: rows))

    def finish() -> None:
        nonlocal waited, predictions
        decoded, future, rows_of = pending.pop(0)
        began = time.perf_counter()
        reply = future.result()
        waited += time.perf_counter() - began
        result = score_batch(
            decoded, rows_of(reply), model, now_ms=time.time_ns() // 1_000_000, config=config
        )
        predictions += len(result.predictions)

    client.config_resetstat()
    began = time.perf_counter()
    for i in range(0, len(records), 1000):
        start(records[i : i + 1000])
        while len(pending) > 1:
            finish()
    while pending:
        finish()
    wall = time.perf_counter() - began
    pool.shutdown()
    redis_usec = sum(int(v["usec"]) for v in client.info("commandstats").values())
    orders = sum(1 for r in records if r.topic() == "orders")
    assert predictions == orders, f"{predictions} predictions for {orders} orders"
    return {
        "mode": mode,
        "orders": orders,
        "seconds": wall,
        "orders_per_s": orders / wall,
        "redis_s": redis_usec / 1e6,
        "main_waited_s": waited,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=150_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    records = _records(args.events)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, start_stack(Settings(data_dir=Path(tmp))) as urls:
        client = redis.Redis.from_url(urls.redis_url)
        for round_ in range(args.rounds):
            for mode in MODES:  # alternating, so drift on a shared machine hits both
                run = _run(client, records, mode, prefix=f"pipe{round_}{mode[0]}:")
                runs.append(run)
                print(f"{mode}: {run['orders_per_s']:,.0f} orders/s", flush=True)
        client.close()

    summary = {}
    for mode in MODES:
        mine = [r for r in runs if r["mode"] == mode]
        summary[mode] = {
            "orders_per_s": statistics.median(r["orders_per_s"] for r in mine),
            "redis_busy_share": statistics.median(r["redis_s"] / r["seconds"] for r in mine),
            "main_waited_share": statistics.median(r["main_waited_s"] / r["seconds"] for r in mine),
        }
    ratio = summary["on its thread"]["orders_per_s"] / summary["inline"]["orders_per_s"]
    table = Table(title=f"worker core without Kafka, {args.events:,} events, median of "
                  f"{args.rounds}; on its thread ÷ inline = {ratio:.2f}×")  # fmt: skip
    for column in ("feature update", "orders/s", "Redis busy", "main thread waiting"):
        table.add_column(column, justify="right")
    for mode, s in summary.items():
        table.add_row(
            mode,
            f"{s['orders_per_s']:,.0f}",
            f"{s['redis_busy_share']:.0%}",
            f"{s['main_waited_share']:.0%}",
        )
    Console().print(table)
    payload = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average": os.getloadavg(),
        },
        "events": args.events,
        "rounds": args.rounds,
        "summary": summary,
        "thread_over_inline": ratio,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(payload, option=orjson.OPT_INDENT_2))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()

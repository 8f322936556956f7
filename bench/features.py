"""Streaming feature throughput and memory: the worker's partition state next to a naive baseline.

Both run against a real redis-server started here (``start_stack``) on the same steady load
(``bench/loads.py``: 2,000 stores in 6 markets, orders, deliveries and snapshots):

- ``worker state``: ``RedisFeatureSource.update_and_read``, the batch applied to the state in
  the process and written behind in one MULTI/EXEC, at batch sizes 1, 100 and 1000;
- ``naive``: what one would write with Redis as the only state — per event one command per counter
  (INCR of per-minute bucket keys with a TTL, HSET/HGET/HDEL of outstanding orders), per order one
  MGET per windowed feature, a GET per gauge and an HGET per batch feature, each its own round
  trip. It keeps correct windows but has no dedup or lateness rule, so it does strictly less.

Then the memory of the stream's keys (``MEMORY USAGE`` summed) after 100k and after 1M events,
and where the batch-1000 time goes: Redis's command time next to the wall time, plus the top
Python functions under cProfile.

    python -m bench.features                  # full run (~3 minutes here)
    python -m bench.features --memory-events 200000

Prints a table and writes ``bench/results/features.json``.
"""

from __future__ import annotations

import argparse
import cProfile
import itertools
import os
import platform
import pstats
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
import redis
from rich.console import Console
from rich.table import Table

from bench.loads import keys_memory, steady_load
from stream_features.contract import (
    Event,
    MarketSupplySnapshot,
    OrderCreated,
    OrderDelivered,
    to_ms,
)
from stream_features.definitions import BATCH_FEATURES, BUCKET_S, STREAM_FEATURES
from stream_features.redis_windows import RedisFeatureSource
from stream_features.settings import Settings
from stream_features.stack import start_stack

RESULTS = Path(__file__).parent / "results" / "features.json"
BUCKET_MS = BUCKET_S * 1000


class NaiveFeatures:
    """Windows as per-minute counter keys, one Redis command per feature per event."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.c, self.p = client, prefix
        self.windowed = [f for f in STREAM_FEATURES if f.window_s]
        self.ttl_s = max(f.window_s or 0 for f in STREAM_FEATURES) + 600

    def _bucket_incr(self, entity: str, signal: str, bucket: int, by: int) -> None:
        key = f"{self.p}{entity}:{signal}:{bucket}"
        self.c.incrby(key, by)
        self.c.expire(key, self.ttl_s)

    def _read(self, order: OrderCreated) -> list[float]:
        bucket = to_ms(order.created_at) // BUCKET_MS
        ent = {"store_id": "s:" + order.store_id, "market_id": "m:" + order.market_id}
        row: list[float] = []
        for f in STREAM_FEATURES:
            e = ent[f.entity]
            if f.window_s:
                signals = f.of if f.agg == "mean" and f.of else (f.signal,)
                sums = []
                for signal in signals:
                    n = f.window_s // BUCKET_S
                    keys = [f"{self.p}{e}:{signal}:{b}" for b in range(bucket - n + 1, bucket + 1)]
                    sums.append(sum(int(v) for v in self.c.mget(keys) if v is not None))
                row.append(sums[0] / sums[1] / 1000 if len(sums) == 2 and sums[1] else sums[0])
            elif f.agg in ("running", "last"):
                row.append(float(self.c.get(f"{self.p}{e}:{f.signal}") or 0))
        for b in BATCH_FEATURES:
            key = f"{self.p}b:{b.keys[0]}:{getattr(order, b.keys[0], '')}"
            row.append(float(self.c.hget(key, b.name) or "nan"))
        row.extend((row[-1] / row[-2]) if row[-2] else float("nan") for _ in range(2))  # ratios
        return row

    def update_and_read(self, events: Sequence[Event]) -> int:
        rows = 0
        for event in events:
            if isinstance(event, OrderCreated):
                self._read(event)
                rows += 1
                ts = to_ms(event.created_at)
                s, m = "s:" + event.store_id, "m:" + event.market_id
                self._bucket_incr(s, "created", ts // BUCKET_MS, 1)
                self._bucket_incr(m, "created", ts // BUCKET_MS, 1)
                self.c.incr(f"{self.p}{s}:outstanding")
                self.c.incr(f"{self.p}{m}:outstanding")
                self.c.hset(f"{self.p}o:{event.store_id}", event.order_id, ts)
            elif isinstance(event, OrderDelivered):
                ts = to_ms(event.delivered_at)
                created = self.c.hget(f"{self.p}o:{event.store_id}", event.order_id)
                if created is None:
                    continue
                self.c.hdel(f"{self.p}o:{event.store_id}", event.order_id)
                s, m = "s:" + event.store_id, "m:" + event.market_id
                self.c.decr(f"{self.p}{s}:outstanding")
                self.c.decr(f"{self.p}{m}:outstanding")
                self._bucket_incr(s, "delivered", ts // BUCKET_MS, 1)
                self._bucket_incr(s, "duration_s", ts // BUCKET_MS, ts - int(created))
            elif isinstance(event, MarketSupplySnapshot):
                self.c.set(f"{self.p}m:{event.market_id}:onshift", event.onshift_dashers)
                self.c.set(f"{self.p}m:{event.market_id}:busy", event.busy_dashers)
        return rows


def _throughput(
    call: Callable[[Sequence[Event]], Any], events: list[Event], batch: int
) -> dict[str, float]:
    orders = sum(isinstance(e, OrderCreated) for e in events)
    started = time.perf_counter()
    for i in range(0, len(events), batch):
        call(events[i : i + batch])
    elapsed = time.perf_counter() - started
    return {
        "events": len(events),
        "orders": orders,
        "seconds": elapsed,
        "orders_per_s": orders / elapsed,
        "events_per_s": len(events) / elapsed,
    }


def _redis_usec(client: redis.Redis) -> int:
    """Microseconds redis-server spent in commands so far (INFO commandstats)."""
    return sum(int(v["usec"]) for v in client.info("commandstats").values())


def _profile(client: redis.Redis, events: list[Event]) -> dict[str, Any]:
    """Batch-1000 time split into Redis's command time (INFO commandstats) and the rest,
    plus the Python hot spots of the worker-side state."""
    source = RedisFeatureSource(client, key_prefix="prof:")
    profiler = cProfile.Profile()
    batches = [events[i : i + 1000] for i in range(0, len(events), 1000)]
    wall = 0.0
    redis_before = _redis_usec(client)
    for batch in batches:
        started = time.perf_counter()
        profiler.enable()
        source.update_and_read(batch)
        profiler.disable()
        wall += time.perf_counter() - started
    redis_s = (_redis_usec(client) - redis_before) / 1e6
    stats = pstats.Stats(profiler)
    entries: list[tuple[str, float, float]] = []
    for (file, line, func), (_, _, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]  # pstats keeps its table untyped
        entries.append((f"{Path(file).name}:{line}:{func}", tottime, cumtime))
    entries.sort(key=lambda e: e[1], reverse=True)
    return {
        "note": "wall is inside cProfile; Redis time is the servers' command time "
        "(INFO commandstats) of the write-behind and the reads around it",
        "batches": len(batches),
        "wall_s": wall,
        "redis_s": redis_s,
        "redis_share": redis_s / wall,
        "redis_ms_per_batch": 1000 * redis_s / max(len(batches), 1),
        "outside_redis_s": wall - redis_s,
        "python_top_tottime": [
            {"function": name, "tottime_s": tot, "cumtime_s": cum}
            for name, tot, cum in entries[:10]
        ],
    }


def _memory(client: redis.Redis, total: int, checkpoints: tuple[int, ...]) -> dict[str, Any]:
    source = RedisFeatureSource(client, key_prefix="mem:")
    events = steady_load(total)
    out: dict[str, Any] = {}
    streamed = 0
    started = time.perf_counter()
    while batch := list(itertools.islice(events, 1000)):
        source.update_and_read(batch)
        streamed += len(batch)
        if streamed in checkpoints:
            size, keys = keys_memory(client, "mem:")
            out[str(streamed)] = {"bytes": size, "keys": keys}
    out["seconds"] = time.perf_counter() - started
    first, last = (out[str(c)]["bytes"] for c in (checkpoints[0], checkpoints[-1]))
    out["ratio"] = last / first
    return out


def _runs(client: redis.Redis, events: list[Any], naive_events: int) -> list[dict[str, Any]]:
    """Throughput of the worker's state at batches of 1, 100 and 1000, then of the naive
    per-event baseline."""
    console = Console()
    runs: list[dict[str, Any]] = []
    for batch in (1, 100, 1000):
        sample = events[: min(len(events), 5_000)] if batch == 1 else events
        source = RedisFeatureSource(client, key_prefix=f"state{batch}:")
        runs.append(
            {
                "impl": "worker state",
                "batch": batch,
                **_throughput(source.update_and_read, sample, batch),
            }
        )
        console.log(runs[-1])
    naive = NaiveFeatures(client, "naive:")
    sample = events[:naive_events]
    runs.append({"impl": "naive", "batch": 1, **_throughput(naive.update_and_read, sample, 1)})
    console.log(runs[-1])
    return runs


def _show(report: dict[str, Any], memory_events: int) -> None:
    runs, profile, memory = report["throughput"], report["profile_batch_1000"], report["memory"]
    console = Console()
    table = Table(
        title=f"streaming features, {os.cpu_count()} cores, redis {report['machine']['redis']}"
    )
    for col in ("impl", "batch", "orders", "seconds", "orders/s", "events/s"):
        table.add_column(col, justify="right")
    for run in runs:
        table.add_row(
            run["impl"],
            str(run["batch"]),
            str(run["orders"]),
            f"{run['seconds']:.2f}",
            f"{run['orders_per_s']:,.0f}",
            f"{run['events_per_s']:,.0f}",
        )
    console.print(table)
    console.print(
        f"batch 1000: Redis {profile['redis_s']:.2f} s of {profile['wall_s']:.2f} s wall "
        f"({profile['redis_share']:.0%}), {profile['redis_ms_per_batch']:.1f} ms Redis per batch"
    )
    console.print(
        f"memory: {memory['100000']['bytes']:,} B after 100k events, "
        f"{memory[str(memory_events)]['bytes']:,} B after {memory_events:,} "
        f"(ratio {memory['ratio']:.2f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=60_000, help="events per throughput run")
    parser.add_argument("--naive-events", type=int, default=3_000)
    parser.add_argument("--memory-events", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    events = list(steady_load(args.events))
    with (
        tempfile.TemporaryDirectory() as data_dir,
        start_stack(Settings(data_dir=Path(data_dir))) as urls,
    ):
        client = redis.Redis.from_url(urls.redis_url)
        info = client.info("server")
        runs = _runs(client, events, args.naive_events)
        profile = _profile(client, events)
        Console().log(profile)
        memory = _memory(client, args.memory_events, (100_000, args.memory_events))
        Console().log(memory)
    report = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "redis": info.get("redis_version"),
            "platform": platform.platform(),
        },
        "load": "bench.loads.steady_load: 2000 stores, 6 markets, 0.1 s between orders",
        "throughput": runs,
        "target_orders_per_s_at_1000": 100_000,
        "profile_batch_1000": profile,
        "memory": memory,
    }
    _show(report, args.memory_events)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()

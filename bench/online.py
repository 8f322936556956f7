"""Online prediction latency: ``eta serve`` (one worker) under a fixed request rate.

Set-up: the embedded stack, a production-sized model (``serving_setup``: trained once on
generated data, compiled with lleaves) at ``eta@production``, and an hour of a 2,000-store
marketplace applied to Redis as the stream applies it. ``eta serve`` runs as its own process.

Load comes from another process: an open-loop generator (asyncio over raw keep-alive HTTP/1.1
connections) sends single-order ``POST /v1/predictions`` at ``--rate`` per second on a fixed
schedule; latency runs from each request's *scheduled* time to its last response byte, so a
stalled server cannot hide its queue (no coordinated omission). Then a closed loop with
``--concurrency`` connections finds the maximum throughput. Last, an in-process breakdown of
one request's parts (parse, feature read, predict, encode, the whole ASGI call) shows where the
time goes.

    python -m bench.online                        # 1,000 req/s for 20 s, then max throughput
    python -m bench.online --rate 500 --seconds 10 --scoring lightgbm

Prints tables and writes ``bench/results/online.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, MutableMapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import psutil
import redis
from rich.console import Console
from rich.table import Table

from bench.http_load import request_bytes, run_load, summary
from bench.serving_setup import bench_artifact, register, seed_state
from predictor.models.artifact import EtaModel
from stream_features.contract import OrderCreated
from stream_features.settings import Settings
from stream_features.stack import free_port, start_stack

RESULTS = Path(__file__).parent / "results" / "online.json"
_READ_COMMANDS = ("get", "smembers", "hmget", "hgetall")
"""What the online read sends (``RedisFeatureSource.read_plan``); their time in Redis is its."""


# --- set-up ------------------------------------------------------------------------------


def _orders(stores: int, n: int, now: datetime) -> list[OrderCreated]:
    rng = random.Random(3)
    out = []
    for i in range(n):
        store = rng.randrange(stores)
        out.append(
            OrderCreated(
                order_id=f"bench-{i}",
                created_at=now,
                market_id=f"m{store % 8}",
                store_id=f"s{store}",
                store_category=("pizza", "thai", "sushi", "burgers", "salad", "mexican")[store % 6],
                order_protocol=1 + store % 5,
                total_items=1 + i % 6,
                subtotal=900 + (i * 37) % 6000,
                num_distinct_items=1,
                min_item_price=300,
                max_item_price=2500,
                estimated_order_place_duration_s=60 + i % 300,
                estimated_store_to_consumer_driving_duration_s=300 + (i * 7) % 1500,
            )
        )
    return out


def _server(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", "from predictor.cli import main; main()", "serve"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def _wait_ready(
    base: str, backend: str | None, proc: subprocess.Popen[bytes], log: Path
) -> dict[str, Any]:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"eta serve exited:\n{log.read_text()[-3000:]}")
        try:
            ready = httpx.get(f"{base}/readyz", timeout=2)
            if ready.status_code == 200 and backend in (None, ready.json().get("backend")):
                body: dict[str, Any] = ready.json()
                return body
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit("eta serve was not ready (with the wanted backend) within 300 s")


def _cpu_during(
    proc: psutil.Process, run: Callable[[], dict[str, Any]]
) -> tuple[dict[str, Any], float]:
    before = proc.cpu_times()
    started = time.monotonic()
    result = run()
    after = proc.cpu_times()
    busy = (after.user - before.user) + (after.system - before.system)
    return result, 100 * busy / (time.monotonic() - started)


# --- where one request's time goes (in process) --------------------------------------------


def _breakdown(redis_url: str, model: Any, orders: list[OrderCreated], n: int) -> dict[str, Any]:
    from predictor.api import ApiConfig, create_app
    from predictor.api.loop_redis import api_async_redis
    from predictor.api.parsing import parse_orders
    from predictor.api.predict import served_now
    from predictor.serving.encoding import encode_prediction
    from stream_features.online import get_online_features

    client = redis.Redis.from_url(redis_url)
    bodies = [o.model_dump_json().encode() for o in orders]
    parts: dict[str, list[float]] = {k: [] for k in ("parse", "features", "predict", "encode")}
    for i in range(n):
        body = bodies[i % len(bodies)]
        t0 = time.perf_counter_ns()
        (order,), _ = parse_orders(body)
        t1 = time.perf_counter_ns()
        rows = get_online_features(client, [order])
        t2 = time.perf_counter_ns()
        duration = float(model.predict(rows.values)[0])
        t3 = time.perf_counter_ns()
        encode_prediction(
            order,
            duration,
            model_name=model.name,
            model_version=model.version,
            served_at=served_now(),
            feature_freshness_s=float(rows.freshness_s[0]),
            mode="online",
        )
        t4 = time.perf_counter_ns()
        for name, a, b in (
            ("parse", t0, t1),
            ("features", t1, t2),
            ("predict", t2, t3),
            ("encode", t3, t4),
        ):
            parts[name].append((b - a) / 1000)

    class _Models:
        def peek(self) -> Any:
            return model

    app = create_app(ApiConfig(), client, _Models(), async_client=api_async_redis(redis_url, 2.0))
    whole: list[float] = []

    async def asgi() -> None:
        """The app called as a server calls it (scope, receive, send), no client in the way."""
        for i in range(n):
            body = bodies[i % len(bodies)]
            scope = {
                "type": "http",
                "asgi": {"version": "3.0"},
                "http_version": "1.1",
                "method": "POST",
                "scheme": "http",
                "path": "/v1/predictions",
                "raw_path": b"/v1/predictions",
                "query_string": b"",
                "root_path": "",
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
                "client": ("127.0.0.1", 1),
                "server": ("127.0.0.1", 8080),
            }
            sent: list[Any] = []

            async def receive(body: bytes = body) -> MutableMapping[str, Any]:
                return {"type": "http.request", "body": body, "more_body": False}

            async def send(message: MutableMapping[str, Any], sent: list[Any] = sent) -> None:
                sent.append(message)

            started = time.perf_counter_ns()
            await app(scope, receive, send)
            whole.append((time.perf_counter_ns() - started) / 1000)
            assert sent[0]["status"] == 200, sent

    asyncio.run(asgi())
    parts["whole_asgi_call"] = whole
    return {
        name: {
            "p50_us": round(statistics.median(v), 1),
            "p99_us": round(float(np.percentile(v, 99)), 1),
        }
        for name, v in parts.items()
    }


# --- main --------------------------------------------------------------------------------


def main() -> None:
    args = _parser().parse_args()
    console = Console()
    model, fixed, most, redis_us, breakdown = _measure(args, console)
    results = {
        "fixed_rate": {
            "rate_per_s": args.rate,
            **summary(*fixed),
            "redis_us_per_request": redis_us,
        },
        "max_throughput": {"concurrency": args.concurrency, **summary(*most)},
    }
    _print_tables(console, args, model, results, breakdown)
    report = _report(args, model, results, breakdown)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    console.print(f"written to {args.out}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--connections", type=int, default=64, help="open-loop connections")
    parser.add_argument("--concurrency", type=int, default=16, help="closed-loop connections")
    parser.add_argument("--max-seconds", type=float, default=10.0)
    parser.add_argument("--stores", type=int, default=2000)
    parser.add_argument("--scoring", default="compiled", choices=["compiled", "lightgbm"])
    parser.add_argument("--artifact", type=Path, help="an artifact directory (default: train)")
    parser.add_argument("--train-rows", type=int, default=100_000)
    parser.add_argument("--max-rounds", type=int, default=2000)
    parser.add_argument(
        "--no-range", action="store_true", help="a model trained without the ETA range"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser


Load = tuple[dict[str, Any], float]  # what run_load measured, and the server's CPU over it


def _measure(
    args: argparse.Namespace, console: Console
) -> tuple[EtaModel, Load, Load, float, dict[str, Any]]:
    """The stack, the model, Redis state and ``eta serve`` started; both loads run against it,
    then the in-process breakdown of one request. Returns the model, the fixed-rate and the
    closed-loop measurements, Redis's time per request of the online read and the breakdown."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        start_stack(Settings(data_dir=Path(tmp) / "stack")) as urls,
    ):
        workdir = Path(tmp)
        model = register(
            bench_artifact(
                args.artifact, args.train_rows, args.max_rounds, with_range=not args.no_range
            ),
            workdir / "models",
        )
        client = redis.Redis.from_url(urls.redis_url)
        now = datetime.now(UTC)
        seed_state(client, now, stores=args.stores, markets=8, orders=args.stores * 10)
        orders = _orders(args.stores, 1000, now)
        payloads = [request_bytes(o.model_dump_json().encode()) for o in orders]
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETA_")}
        env.update(
            {
                "ETA_REDIS_URL": urls.redis_url,
                "ETA_REGISTRY_DIR": str(workdir / "models"),
                "ETA_SCORING": args.scoring,
                "ETA_HTTP_PORT": str(port),
                "ETA_HTTP_HOST": "127.0.0.1",
            }
        )
        log = workdir / "serve.log"
        server = _server(env, log)
        try:
            ready = _wait_ready(f"http://127.0.0.1:{port}", args.scoring, server, log)
            console.print(f"eta serve ready: {ready}")
            server_ps = psutil.Process(server.pid)
            run_load("open", port, payloads, args.rate, 2.0, args.connections)  # warm-up
            client.config_resetstat()
            fixed, fixed_cpu = _cpu_during(
                server_ps,
                lambda: run_load("open", port, payloads, args.rate, args.seconds, args.connections),
            )
            stats = client.info("commandstats")
            redis_us = round(
                sum(stats.get(f"cmdstat_{c}", {}).get("usec", 0) for c in _READ_COMMANDS)
                / max(fixed["sent"], 1),
                1,
            )
            most, most_cpu = _cpu_during(
                server_ps,
                lambda: run_load("closed", port, payloads, args.max_seconds, args.concurrency),
            )
        finally:
            server.terminate()
            server.wait(30)
        breakdown = _breakdown(urls.redis_url, model, orders, 3000)

    return model, (fixed, fixed_cpu), (most, most_cpu), redis_us, breakdown


def _print_tables(
    console: Console,
    args: argparse.Namespace,
    model: EtaModel,
    results: dict[str, Any],
    breakdown: dict[str, Any],
) -> None:
    table = Table(title=f"eta serve, 1 worker, {model.backend} scoring, {os.cpu_count()} cores")
    for column in (
        "load",
        "requests",
        "ok",
        "achieved/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "server CPU %",
    ):
        table.add_column(column, justify="right")
    for name, r in (
        (f"fixed {args.rate:.0f}/s", results["fixed_rate"]),
        (f"closed, {args.concurrency} conns", results["max_throughput"]),
    ):
        table.add_row(
            name,
            f"{r['requests']:,}",
            f"{r['ok']:,}",
            f"{r['achieved_per_s']:,.0f}",
            f"{r['p50_ms']:.2f}",
            f"{r['p99_ms']:.2f}",
            f"{r['p999_ms']:.2f}",
            f"{r['max_ms']:.1f}",
            f"{r['server_cpu_pct']:.0f}",
        )
    console.print(table)
    parts = Table(title="one request, in process (µs)")
    for column in ("part", "p50", "p99"):
        parts.add_column(column, justify="right")
    for name, r in breakdown.items():
        parts.add_row(name, f"{r['p50_us']:.0f}", f"{r['p99_us']:.0f}")
    console.print(parts)
    console.print(
        f"Redis time of the online read: {results['fixed_rate']['redis_us_per_request']} µs per "
        f"request ({', '.join(_READ_COMMANDS).upper()} in INFO commandstats, fixed-rate run)"
    )


def _report(
    args: argparse.Namespace, model: EtaModel, results: dict[str, Any], breakdown: dict[str, Any]
) -> dict[str, Any]:
    """What ``--out`` holds."""
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_end": os.getloadavg(),
        },
        "model": {
            "num_trees": model.metadata.get("num_trees"),
            "backend": model.backend,
            "version": model.version,
            "range": "range" in model.metadata,  # p10-p90 on every answer (off: --no-range)
        },
        "state": {"stores": args.stores, "orders_last_hour": args.stores * 10},
        "targets": {"p99_ms_at_1000_per_s": 10.0},
        "results": results,
        "breakdown_us": breakdown,
    }


if __name__ == "__main__":
    main()

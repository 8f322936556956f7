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

    python bench/online.py                        # 1,000 req/s for 20 s, then max throughput
    python bench/online.py --rate 500 --seconds 10 --scoring lightgbm

Prints tables and writes ``bench/results/online.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serving_setup import bench_artifact, register, seed_state

from stream_features.contract import OrderCreated
from stream_features.settings import Settings
from stream_features.stack import free_port, start_stack

RESULTS = Path(__file__).parent / "results" / "online.json"


# --- the load generator (runs in its own process) ------------------------------------------


def _request(body: bytes) -> bytes:
    head = (
        "POST /v1/predictions HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: bytes
) -> int:
    writer.write(payload)
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return int(head[9:12])


async def _open_loop(
    port: int, payloads: list[bytes], rate: float, seconds: float, connections: int
) -> dict[str, Any]:
    # perf_counter, not loop.time(): uvloop's clock (and its timers) tick in milliseconds, so
    # a sleep per request would cap the rate below 1,000/s and round every latency.
    clock = time.perf_counter
    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
    latencies: list[float] = []
    offsets: list[float] = []
    statuses: dict[int, int] = {}
    start = clock() + 0.1

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while (item := await queue.get()) is not None:
            scheduled, payload = item
            status = await _exchange(reader, writer, payload)
            latencies.append(clock() - scheduled)
            offsets.append(scheduled - start)
            statuses[status] = statuses.get(status, 0) + 1
        writer.close()

    workers = [asyncio.create_task(connection()) for _ in range(connections)]
    total = int(rate * seconds)
    sent = 0
    while sent < total:  # every request due by now goes out, then sleep to the next one
        now = clock()
        while sent < total and start + sent / rate <= now:
            queue.put_nowait((start + sent / rate, payloads[sent % len(payloads)]))
            sent += 1
        if sent < total:
            await asyncio.sleep(max(0.0, start + sent / rate - clock()))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    elapsed = clock() - start
    return {
        "latencies_s": latencies,
        "offsets_s": offsets,
        "statuses": statuses,
        "elapsed_s": elapsed,
        "sent": total,
    }


async def _closed_loop(
    port: int, payloads: list[bytes], seconds: float, concurrency: int
) -> dict[str, Any]:
    clock = time.perf_counter
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    end = clock() + seconds

    async def connection(offset: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = offset
        while clock() < end:
            started = clock()
            status = await _exchange(reader, writer, payloads[i % len(payloads)])
            latencies.append(clock() - started)
            statuses[status] = statuses.get(status, 0) + 1
            i += concurrency
        writer.close()

    began = clock()
    await asyncio.gather(*(connection(k) for k in range(concurrency)))
    return {
        "latencies_s": latencies,
        "statuses": statuses,
        "elapsed_s": clock() - began,
        "sent": len(latencies),
    }


def _load_process(kind: str, args: tuple[Any, ...], out: Any) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - plain asyncio works too, with more client CPU
        pass
    started_cpu = time.process_time()
    result = asyncio.run(_open_loop(*args) if kind == "open" else _closed_loop(*args))
    result["client_cpu_s"] = time.process_time() - started_cpu
    out.send(result)
    out.close()


def _run_load(kind: str, *args: Any) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    ours, theirs = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_load_process, args=(kind, args, theirs))
    proc.start()
    result: dict[str, Any] = ours.recv()
    proc.join(30)
    return result


def _per_second_p99(result: dict[str, Any]) -> list[float]:
    """p99 latency (ms) of the requests scheduled in each second: shows a stall as a spike."""
    lat = np.asarray(result["latencies_s"]) * 1000
    second = np.asarray(result["offsets_s"]).astype(int)
    return [
        round(float(np.percentile(lat[second == s], 99)), 2)
        for s in range(int(second.max()) + 1)
        if (second == s).any()
    ]


def _summary(result: dict[str, Any], server_cpu: float) -> dict[str, Any]:
    lat = np.asarray(result["latencies_s"]) * 1000
    ok = result["statuses"].get(200, 0)
    per_second = _per_second_p99(result) if "offsets_s" in result else None
    return {
        "requests": int(result["sent"]),
        "ok": ok,
        "statuses": {str(k): v for k, v in result["statuses"].items()},
        "achieved_per_s": round(len(lat) / result["elapsed_s"], 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 3),
        "p90_ms": round(float(np.percentile(lat, 90)), 3),
        "p99_ms": round(float(np.percentile(lat, 99)), 3),
        "p999_ms": round(float(np.percentile(lat, 99.9)), 3),
        "max_ms": round(float(lat.max()), 3),
        "server_cpu_pct": round(server_cpu, 1),
        "client_cpu_pct": round(100 * result["client_cpu_s"] / result["elapsed_s"], 1),
        **({"p99_ms_by_second": per_second} if per_second is not None else {}),
    }


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

    app = create_app(ApiConfig(), client, _Models())
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

            async def receive(body: bytes = body) -> dict[str, Any]:
                return {"type": "http.request", "body": body, "more_body": False}

            async def send(message: dict[str, Any], sent: list[Any] = sent) -> None:
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
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    console = Console()

    with (
        tempfile.TemporaryDirectory() as tmp,
        start_stack(Settings(data_dir=Path(tmp) / "stack")) as urls,
    ):
        workdir = Path(tmp)
        model = register(
            bench_artifact(args.artifact, args.train_rows, args.max_rounds), workdir / "models"
        )
        client = redis.Redis.from_url(urls.redis_url)
        now = datetime.now(UTC)
        seed_state(client, now, stores=args.stores, markets=8, orders=args.stores * 10)
        orders = _orders(args.stores, 1000, now)
        payloads = [_request(o.model_dump_json().encode()) for o in orders]
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
            _run_load("open", port, payloads, args.rate, 2.0, args.connections)  # warm-up
            client.config_resetstat()
            fixed, fixed_cpu = _cpu_during(
                server_ps,
                lambda: _run_load(
                    "open", port, payloads, args.rate, args.seconds, args.connections
                ),
            )
            script = client.info("commandstats").get("cmdstat_evalsha", {})
            most, most_cpu = _cpu_during(
                server_ps,
                lambda: _run_load("closed", port, payloads, args.max_seconds, args.concurrency),
            )
        finally:
            server.terminate()
            server.wait(30)
        breakdown = _breakdown(urls.redis_url, model, orders, 3000)

    results = {
        "fixed_rate": {
            "rate_per_s": args.rate,
            **_summary(fixed, fixed_cpu),
            "redis_script_us_per_request": script.get("usec_per_call"),
        },
        "max_throughput": {"concurrency": args.concurrency, **_summary(most, most_cpu)},
    }
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
        f"Redis time in the feature script: {script.get('usec_per_call')} µs per request "
        "(fixed-rate run, INFO commandstats)"
    )
    report = {
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
        },
        "state": {"stores": args.stores, "orders_last_hour": args.stores * 10},
        "targets": {"p99_ms_at_1000_per_s": 10.0},
        "results": results,
        "breakdown_us": breakdown,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    console.print(f"written to {args.out}")


if __name__ == "__main__":
    main()

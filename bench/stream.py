"""Stream worker benchmark: sustained throughput and end-to-end latency, per engine.

On the embedded stack (Tansu + redis-server, started here), with a real model trained on
generated data and served from a registry, for each engine:

* throughput: a backlog of ``--orders`` orders from the marketplace simulator (with its
  deliveries, dasher events and snapshots) is produced first; the worker (a subprocess,
  ``eta predict stream``) is started and the predictions topic is counted. Orders/s is the
  middle 90% of the predictions over the time they took to arrive (start-up and group join
  left out).
* latency: the caught-up worker gets live orders at ``--rate`` orders/s for ``--seconds`` s
  from a producer process; latency is the time a prediction is read back minus the order's
  ``created_at`` (wall clock, same host), first two seconds left out. Then again at
  ``--low-rate``, which every engine can sustain (at ``--rate`` the slow ones queue up).
* RSS: the worker process's resident memory, sampled every 0.5 s, the maximum.
* reference: a trivial consume→produce loop with the worker's exact client settings
  (``bench/stream_loop.py``), measured the same way at the same rates and length right after
  the ``confluent`` engine, on fresh topics, after a short warm-up backlog. Its row is marked
  reference; each engine's row gives its p99 at ``--rate`` over the loop's and whether it is
  within ``REFERENCE_RATIO`` (1.5×, issue #16). ``--no-reference`` leaves it out.

Engines: ``confluent`` and ``faust`` (``eta predict stream --engine ...``) and ``naive``, a
per-event loop for comparison (``bench/naive.py``, the peer bench's naive loop with the
worker's pipeline as its answer: poll one record, one Redis round trip, one predict, produce,
flush, commit).

    python -m bench.stream                          # all three engines
    python -m bench.stream --engines confluent --profile   # cProfile of the worker, top costs
    python -m bench.stream --engines confluent --orders 20000 --seconds 20 --low-rate 0 \
        --out /tmp/stream.json                  # a short check of confluent against the loop

Prints a table and writes ``bench/results/stream.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import pstats
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import psutil
from confluent_kafka import Consumer, Producer
from rich.console import Console
from rich.table import Table

from stream_features.settings import Settings

RESULTS = Path(__file__).parent / "results" / "stream.json"
ROOT = Path(__file__).resolve().parents[1]
BACKLOG = {"confluent": 200_000, "faust": 40_000, "naive": 5_000}
REFERENCE = "trivial loop"
REFERENCE_RATIO = 1.5  # issue #16: p99 at --rate within 1.5x of the trivial loop's
REFERENCE_WARMUP = 2_000  # orders the loop answers before the live phase: group joined
_console = Console(width=150)


# --- setup ------------------------------------------------------------------------------------


def _register_model(settings: Settings, workdir: Path) -> str:
    """Train the production recipe (``TrainConfig()``) on generated rows and promote it."""
    from predictor.models.dataset import split_by_time
    from predictor.models.registry import Registry
    from predictor.models.synthetic import synthetic_training_set
    from predictor.models.workflow import train_to_artifact
    from stream_features.definitions import feature_names

    split = split_by_time(synthetic_training_set(20_000, seed=0), feature_names(), 0.2)
    out = train_to_artifact(
        split, workdir / "artifact", name=settings.model_name, training_set="generated", force=True
    )
    registry = Registry(settings.registry_dir)
    version = registry.register(out.artifact_dir, settings.model_name)
    registry.promote(settings.model_name, version, settings.serve_stage)
    trees = out.result.booster.num_trees()
    return f"{settings.model_name}:{version} ({trees} trees)"


def _env(settings: Settings) -> dict[str, str]:
    """The worker's environment: ours without ``ETA_*``, then ``settings`` as ``ETA_*``
    (a list or tuple as JSON, which is how pydantic-settings reads one from the environment)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETA_")}
    for name, value in settings.model_dump(exclude_defaults=True).items():
        if value is None or name == "kafka":
            continue
        secret = getattr(value, "get_secret_value", None)
        if isinstance(value, list | tuple):
            env[f"ETA_{name.upper()}"] = orjson.dumps(value).decode()
        else:
            env[f"ETA_{name.upper()}"] = str(secret() if secret else value)
    return env


def _backlog(settings: Settings, n_orders: int) -> int:
    """Produce a simulated marketplace up to its ``n_orders``-th order; returns events sent."""
    from producers.config import SimConfig
    from producers.publisher import Publisher, Routes
    from producers.simulator import Marketplace
    from stream_features.contract import OrderCreated
    from stream_features.kafka_clients import producer_config

    now = datetime.now(UTC)
    market = Marketplace(SimConfig(orders_per_day=n_orders * 24 * 10), seed=7)
    orders = 0
    with Publisher(
        {**producer_config(settings), "linger.ms": 20}, Routes.from_settings(settings)
    ) as pub:
        for event in market.events(now - timedelta(hours=1), now):
            pub.publish(event)
            if isinstance(event, OrderCreated):
                orders += 1
                if orders >= n_orders:
                    break
        sent = pub.produced
    return sent


# --- the worker under test ----------------------------------------------------------------------


class Worker:
    """One worker subprocess and its RSS, sampled in a thread."""

    def __init__(
        self, settings: Settings, engine: str, log: Path, cmd: list[str] | None = None
    ) -> None:
        # ``cmd``: another program in the same harness (bench/peers.py runs its peers so)
        if cmd is None and engine == "naive":
            cmd = [sys.executable, "-m", "bench.naive", "--eta"]
        elif cmd is None:
            call = "from predictor.cli import main; main()"
            cmd = [sys.executable, "-c", call, "predict", "stream", "--engine", engine]
        self._log = log.open("ab")
        self.proc = subprocess.Popen(
            cmd, env=_env(settings), stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT
        )
        self.rss_max = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        proc = psutil.Process(self.proc.pid)
        while not self._stop.wait(0.5):
            try:
                self.rss_max = max(self.rss_max, proc.memory_info().rss)
            except psutil.Error:
                return

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(10)
        self._stop.set()
        self._log.close()
        return code


# --- measuring ----------------------------------------------------------------------------------


def _reader(settings: Settings, fetch_wait_ms: int = 10) -> Consumer:
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"bench-reader-{time.time_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": fetch_wait_ms,  # Tansu answers long polls late (wiring)
        }
    )
    consumer.subscribe([settings.predictions_topic])
    return consumer


class CpuShare:
    """CPU used by each process of the stack, sampled every 0.2 s in a thread; ``between``
    gives cores used over a wall-clock window (the worker's ``served_at`` span)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self._procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self._samples: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def stack_pids(urls: Any, worker_pid: int) -> dict[str, int]:
        pids = {"worker": worker_pid, "bench (this process)": os.getpid()}
        kafka_port = urls.kafka_bootstrap_servers.rsplit(":", 1)[1]
        redis_port = urls.redis_url.rsplit(":", 1)[1].split("/")[0]
        for proc in psutil.process_iter(["cmdline"]):
            cmd = " ".join(proc.info["cmdline"] or [])
            if f"127.0.0.1:{kafka_port}" in cmd and "--listener-url" in cmd:
                pids["broker (Tansu)"] = proc.pid
            elif "redis-server" in cmd and (f":{redis_port}" in cmd or f" {redis_port}" in cmd):
                pids["redis-server"] = proc.pid
        return pids

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            used = {}
            for name, proc in self._procs.items():
                try:
                    times = proc.cpu_times()
                except psutil.Error:
                    continue
                used[name] = float(times.user + times.system)
            self._samples.append((time.time(), used))

    def watch(self, name: str, pid: int) -> None:
        self._procs = {**self._procs, name: psutil.Process(pid)}

    def close(self) -> None:
        self._stop.set()

    def between(self, t0: float, t1: float) -> dict[str, float]:
        inside = [s for s in self._samples if t0 <= s[0] <= t1]
        if len(inside) < 2:
            return {}
        (a_t, a), (b_t, b) = inside[0], inside[-1]
        wall = b_t - a_t
        cores = {name: round((b[name] - a[name]) / wall, 2) for name in b if name in a}
        return {**cores, "total": round(sum(cores.values()), 2), "window_s": round(wall, 2)}


def _throughput(
    reader: Consumer, expected: int, timeout_s: float, cpu: CpuShare | None = None
) -> dict[str, Any]:
    """Orders/s from the predictions' ``served_at`` (the worker's clock at each batch), over
    the middle 90%: the worker's pace, whatever pace this reader keeps."""
    served_ms: list[float] = []
    deadline = time.monotonic() + timeout_s
    while len(served_ms) < expected and time.monotonic() < deadline:
        for m in reader.consume(10_000, 0.1):
            if m.error() is None:
                served = orjson.loads(m.value() or b"{}")["served_at"]
                served_ms.append(datetime.fromisoformat(served).timestamp() * 1000)
    count = len(served_ms)
    if count < expected * 0.5:
        return {"predictions": count, "orders_per_s": None}
    ordered = np.sort(np.array(served_ms))
    lo, hi = ordered[int(count * 0.05)], ordered[int(count * 0.95) - 1]
    rate = 0.9 * count / max((hi - lo) / 1000, 1e-9)
    cpu_cores = cpu.between(lo / 1000, hi / 1000) if cpu is not None else {}
    return {
        "predictions": count,
        "orders_per_s": round(float(rate)),
        "span_s": round(float((ordered[-1] - ordered[0]) / 1000), 2),
        "cpu_cores": cpu_cores,
    }


def offer(bootstrap: str, topic: str, rate: float, seconds: float) -> None:
    """Produce live orders at ``rate``/s for ``seconds`` (its own process: no GIL sharing).

    Orders are a contract-valid template with the id and ``created_at`` filled in: building a
    pydantic model per order cost this generator half a core at 5,000/s, on a 2-core machine
    it shares with everything it measures.
    """
    from stream_features.contract import OrderCreated, encode

    template = encode(
        OrderCreated(
            order_id="ID",
            created_at=datetime(2026, 1, 1, tzinfo=UTC),
            market_id="MARKET",
            store_id="STORE",
            store_category="pizza",
            order_protocol=1,
            total_items=2,
            subtotal=2400,
            num_distinct_items=2,
            min_item_price=500,
            max_item_price=1500,
            estimated_order_place_duration_s=300,
            estimated_store_to_consumer_driving_duration_s=700,
        )
    ).decode()
    template = template.replace("{", "{{").replace("}", "}}")  # literal JSON braces
    template = template.replace('"2026-01-01T00:00:00Z"', '"{at}"')
    for name in ("ID", "MARKET", "STORE"):
        template = template.replace(f'"{name}"', '"{' + name.lower() + '}"')
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 1, "acks": "all", "enable.idempotence": True}
    )
    tick_s, sent, started, total = 0.005, 0, time.monotonic(), int(rate * seconds)
    while sent < total:
        due = min(int((time.monotonic() - started) * rate), total)
        while sent < due:
            store = f"s{sent % 2000}"
            at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            value = template.format(id=f"live{sent}", at=at, market=f"m{sent % 6}", store=store)
            producer.produce(topic, value.encode(), store.encode())
            sent += 1
        producer.poll(0)
        time.sleep(tick_s)
    producer.flush(30)


def _latency(
    reader: Consumer, settings: Settings, rate: float, seconds: float, cpu: CpuShare | None = None
) -> dict[str, Any]:
    proc = mp.get_context("spawn").Process(
        target=offer, args=(settings.kafka_bootstrap_servers, settings.orders_topic, rate, seconds)
    )
    proc.start()
    if cpu is not None:
        cpu.watch("load generator", proc.pid or 0)
    window_start = time.time()
    expected = int(rate * seconds)
    lat_ms: list[float] = []
    to_worker_ms: list[float] = []  # created_at -> served_at: producer, broker, fetch, batching
    first: float | None = None
    deadline = time.monotonic() + seconds + 60
    received = 0
    while received < expected and time.monotonic() < deadline:
        for m in reader.consume(10_000, 0.005):  # returns after 5 ms with what it has
            if m.error() is not None:
                continue
            now_ms = time.time() * 1000
            pred = orjson.loads(m.value() or b"{}")
            created_ms = datetime.fromisoformat(pred["created_at"]).timestamp() * 1000
            served_ms = datetime.fromisoformat(pred["served_at"]).timestamp() * 1000
            first = first or now_ms
            received += 1
            if now_ms - first > 2000:  # warm-up left out
                lat_ms.append(now_ms - created_ms)
                to_worker_ms.append(served_ms - created_ms)
    window_end = time.time()
    proc.join(30)
    cores = cpu.between(window_start + 2, window_end) if cpu is not None else {}
    if not lat_ms:
        return {"offered_per_s": rate, "received": received, "cpu_cores": cores}
    arr, part = np.array(lat_ms), np.array(to_worker_ms)
    return {
        "offered_per_s": rate,
        "received": received,
        "p50_ms": round(float(np.percentile(arr, 50)), 1),
        "p99_ms": round(float(np.percentile(arr, 99)), 1),
        "max_ms": round(float(arr.max()), 1),
        "created_to_served_p50_ms": round(float(np.percentile(part, 50)), 1),
        "created_to_served_p99_ms": round(float(np.percentile(part, 99)), 1),
        "cpu_cores": cores,
    }


def _fresh(base: Settings, name: str) -> Settings:
    """``base`` with topics and a group of its own."""
    tag = f"{name}-{time.time_ns() % 10**8}"
    return base.model_copy(
        update={
            "orders_topic": f"orders-{tag}",
            "dasher_events_topic": f"dasher-{tag}",
            "deliveries_topic": f"deliveries-{tag}",
            "predictions_topic": f"predictions-{tag}",
            "dlq_topic": f"dlq-{tag}",
            "monitoring_topic": f"monitoring-{tag}",
            "consumer_group": f"bench-{tag}",
        }
    )


def run_engine(
    base: Settings, urls: Any, engine: str, args: argparse.Namespace, workdir: Path
) -> dict[str, Any]:
    from stream_features.kafka_clients import ensure_topics

    settings = _fresh(base, engine)
    ensure_topics(settings)
    n_orders = args.orders or BACKLOG[engine]
    events = _backlog(settings, n_orders)
    reader = _reader(settings, args.reader_fetch_wait_ms)
    worker = Worker(settings, engine, workdir / f"{engine}.log")
    result: dict[str, Any] = {
        "engine": engine,
        "backlog_orders": n_orders,
        "backlog_events": events,
    }
    cpu = CpuShare(CpuShare.stack_pids(urls, worker.proc.pid))
    result["throughput"] = _throughput(reader, n_orders, timeout_s=600, cpu=cpu)
    if args.low_rate:  # first: at --rate the slower engines are left with a queue
        result["latency_low_rate"] = _latency(reader, settings, args.low_rate, args.seconds, cpu)
    result["latency"] = _latency(reader, settings, args.rate, args.seconds, cpu)
    result["exit_code"] = worker.stop()
    cpu.close()
    result["rss_mb"] = round(worker.rss_max / 2**20)
    reader.close()
    return result


def run_reference(
    base: Settings, urls: Any, args: argparse.Namespace, workdir: Path
) -> dict[str, Any]:
    """The trivial loop (``bench/stream_loop.py``) through the same latency phases."""
    from stream_features.kafka_clients import ensure_topics

    settings = _fresh(base, "loop")
    ensure_topics(settings)
    events = _backlog(settings, REFERENCE_WARMUP)
    reader = _reader(settings, args.reader_fetch_wait_ms)
    cmd = [sys.executable, "-m", "bench.stream_loop"]
    loop = Worker(settings, "loop", workdir / "loop.log", cmd=cmd)
    result: dict[str, Any] = {
        "engine": REFERENCE,
        "reference": True,
        "backlog_orders": REFERENCE_WARMUP,
        "backlog_events": events,
    }
    cpu = CpuShare(CpuShare.stack_pids(urls, loop.proc.pid))
    warmup = _throughput(reader, REFERENCE_WARMUP, timeout_s=120)
    result["warmup"] = {"predictions": warmup["predictions"]}  # not a throughput: orders only
    if args.low_rate:
        result["latency_low_rate"] = _latency(reader, settings, args.low_rate, args.seconds, cpu)
    result["latency"] = _latency(reader, settings, args.rate, args.seconds, cpu)
    result["exit_code"] = loop.stop()
    cpu.close()
    result["rss_mb"] = round(loop.rss_max / 2**20)
    reader.close()
    return result


def versus_reference(
    results: list[dict[str, Any]], reference: dict[str, Any] | None
) -> dict[str, dict[str, Any]]:
    """Per engine: its p99 at ``--rate`` over the trivial loop's, and whether that is within
    ``REFERENCE_RATIO``.

    >>> ref = {"latency": {"p99_ms": 200.0}}
    >>> versus_reference([{"engine": "a", "latency": {"p99_ms": 290.0}},
    ...                   {"engine": "b", "latency": {"received": 0}}], ref)
    {'a': {'p99_ratio': 1.45, 'within_1.5x': True}, 'b': {'p99_ratio': None, 'within_1.5x': False}}
    """
    ref_p99 = (reference or {}).get("latency", {}).get("p99_ms")
    out = {}
    for r in results:
        p99 = r["latency"].get("p99_ms")
        ratio = round(p99 / ref_p99, 2) if p99 is not None and ref_p99 else None
        out[r["engine"]] = {
            "p99_ratio": ratio,
            f"within_{REFERENCE_RATIO:g}x": ratio is not None and ratio <= REFERENCE_RATIO,
        }
    return out


_STAGES = [
    ("core: the whole batch", "pipeline.py", "process_batch"),
    ("core: decode + checks", "pipeline.py", "_validated"),
    ("features: Redis round trip + rows", "redis_windows.py", "update_and_read"),
    ("model predict", "artifact.py", "predict"),
    ("encode predictions", "encoding.py", "answers"),
    ("produce", "confluent.py", "_send"),
    ("consume (incl. waiting)", "~", "<method 'consume' of 'cimpl.Consumer' objects>"),
    ("producer poll", "~", "<method 'poll' of 'cimpl.Producer' objects>"),
    ("waiting for the feature store", "~", "<method 'acquire' of '_thread.lock' objects>"),
]


def _profile_confluent(base: Settings, n_orders: int) -> dict[str, Any]:
    """cProfile of a confluent worker in this process draining a backlog, join excluded."""
    import cProfile

    from predictor.engines.wiring import confluent_worker, redis_features
    from predictor.models.compiled import with_scoring
    from predictor.models.registry import Registry
    from stream_features.kafka_clients import ensure_topics

    settings = _fresh(base, "profile")
    ensure_topics(settings)
    _backlog(settings, n_orders)
    registry = Registry(settings.registry_dir)
    version = registry.resolve(settings.model_name, settings.serve_stage)
    model = with_scoring(registry.load(settings.model_name, version), settings.scoring)
    features = redis_features(settings, settings.redis_url_value() or "")
    worker = confluent_worker(settings, features, lambda: model)
    never = threading.Event()
    worker.open()
    while worker.stats.predictions == 0:  # join the group and take the first batch, unprofiled
        worker.step(never)
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    while worker.stats.predictions < n_orders:
        worker.step(never)
    profiler.disable()
    busy_s = time.perf_counter() - started
    done = worker.stats.predictions
    worker.close()
    stats = pstats.Stats(profiler)
    entries = stats.stats  # type: ignore[attr-defined]  # pstats.Stats keeps its table (.stats) out of typeshed
    rows = [
        {
            "function": f"{Path(file).name}:{line}({func})",
            "calls": calls,
            "tottime_s": round(tt, 3),
            "cumtime_s": round(ct, 3),
        }
        for (file, line, func), (_cc, calls, tt, ct, _callers) in entries.items()
    ]
    rows.sort(key=lambda r: r["tottime_s"], reverse=True)
    stages = {}
    for label, file_name, func_name in _STAGES:
        for (file, _line, func), (_cc, calls, _tt, ct, _callers) in entries.items():
            if func == func_name and (Path(file).name == file_name or file == file_name):
                stages[label] = {"calls": calls, "cumtime_s": round(ct, 3)}
    return {
        "orders": done,
        "busy_s": round(busy_s, 2),
        "orders_per_s_under_profiler": round(done / busy_s),
        "stages": stages,
        "top_tottime": rows[:15],
    }


# --- main -----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", default="confluent,faust,naive")
    parser.add_argument("--orders", type=int, default=0, help="backlog size (default per engine)")
    parser.add_argument("--rate", type=float, default=5000.0, help="offered orders/s (latency)")
    parser.add_argument("--seconds", type=float, default=15.0, help="latency run length")
    parser.add_argument(
        "--reader-fetch-wait-ms", type=int, default=10, help="fetch.wait.max.ms of the reader"
    )
    parser.add_argument("--low-rate", type=float, default=500.0, help="second rate; 0 skips it")
    parser.add_argument("--profile", action="store_true", help="cProfile the confluent worker")
    parser.add_argument(
        "--reference",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure the trivial loop (bench/stream_loop.py) after confluent",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the JSON")
    args = parser.parse_args()

    from stream_features.stack import start_stack

    results: list[dict[str, Any]] = []
    reference: dict[str, Any] | None = None
    engines = args.engines.split(",")
    # right after confluent (etastream's default engine), so the two share the conditions
    reference_after = "confluent" if "confluent" in engines else engines[-1]
    with (
        tempfile.TemporaryDirectory() as tmp,
        start_stack(Settings(data_dir=Path(tmp) / "stack")) as urls,
    ):
        workdir = Path(tmp)
        base = Settings(
            kafka_bootstrap_servers=urls.kafka_bootstrap_servers,
            redis_url=urls.redis_url,
            registry_dir=workdir / "models",
            model_name="eta-bench",
            metrics_port=0,
        )
        model = _register_model(base, workdir)
        _console.print(f"model {model}; stack {urls.kafka_bootstrap_servers}, {urls.redis_url}")
        for engine in engines:
            _console.print(f"[bold]{engine}[/] …")
            results.append(run_engine(base, urls, engine, args, workdir))
            _console.print(results[-1])
            if args.reference and engine == reference_after:
                _console.print(f"[bold]{REFERENCE}[/] (reference) …")
                reference = run_reference(base, urls, args, workdir)
                _console.print(reference)
        profile = _profile_confluent(base, args.orders or 100_000) if args.profile else None
    _report(results, reference, profile, model, args)


def _vs_cell(vs: dict[str, Any]) -> str:
    ratio = vs["p99_ratio"]
    if ratio is None:
        return "-"
    ok = vs[f"within_{REFERENCE_RATIO:g}x"]
    return f"{ratio:g}× {'ok' if ok else 'MISSED'}"


def _report(
    results: list[dict[str, Any]],
    reference: dict[str, Any] | None,
    profile: dict[str, Any] | None,
    model: str,
    args: argparse.Namespace,
) -> None:
    vs = versus_reference(results, reference) if reference is not None else {}
    table = Table(title=f"stream worker, 1 process, {os.cpu_count()} cores; model {model}")
    for col in (
        "engine",
        "backlog orders",
        "orders/s",
        f"p50 ms @{args.rate:g}/s",
        f"p99 ms @{args.rate:g}/s",
        f"p50/p99 ms @{args.low_rate:g}/s",
        "received",
        "RSS MB",
        "exit",
        f"p99 / loop's (≤{REFERENCE_RATIO:g}×)",
    ):
        table.add_column(col, justify="right", no_wrap=col == "engine")
    for r in results + ([reference] if reference is not None else []):
        lat, low = r["latency"], r.get("latency_low_rate", {})
        is_ref = r.get("reference", False)
        rate = "-" if is_ref else f"{r['throughput'].get('orders_per_s') or 0:,}"
        table.add_row(
            f"{r['engine']} (reference)" if is_ref else r["engine"],
            f"{r['backlog_orders']:,}" + (" warm-up" if is_ref else ""),
            rate,
            str(lat.get("p50_ms", "-")),
            str(lat.get("p99_ms", "-")),
            f"{low.get('p50_ms', '-')} / {low.get('p99_ms', '-')}",
            f"{lat['received']:,}",
            str(r["rss_mb"]),
            str(r["exit_code"]),
            "reference" if is_ref else (_vs_cell(vs[r["engine"]]) if vs else "-"),
        )
    _console.print(table)
    if profile is not None:
        _print_profile(profile)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(
        orjson.dumps(
            {
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                },
                "model": model,
                "rate": args.rate,
                "low_rate": args.low_rate,
                "seconds": args.seconds,
                "results": results,
                "reference": reference,
                "reference_ratio": REFERENCE_RATIO,
                "vs_reference": vs,
                "profile": profile,
            },
            option=orjson.OPT_INDENT_2,
        )
    )
    _console.print(f"written {args.out}")


def _print_profile(profile: dict[str, Any]) -> None:
    busy = profile["busy_s"]
    title = (
        f"confluent worker under cProfile: {profile['orders']:,} orders in {busy} s busy "
        f"({profile['orders_per_s_under_profiler']:,}/s with the profiler's overhead)"
    )
    stages = Table(title=title)
    for col in ("stage", "calls", "cumulative s", "share of busy time"):
        stages.add_column(col)
    for label, row in profile["stages"].items():
        share = row["cumtime_s"] / busy if busy else 0.0
        stages.add_row(label, f"{row['calls']:,}", str(row["cumtime_s"]), f"{share:.0%}")
    _console.print(stages)
    top = Table(title="top functions by own time (tottime)")
    for col in ("function", "calls", "tottime s", "cumtime s"):
        top.add_column(col)
    for row in profile["top_tottime"]:
        top.add_row(
            row["function"], f"{row['calls']:,}", str(row["tottime_s"]), str(row["cumtime_s"])
        )
    _console.print(top)


if __name__ == "__main__":
    main()

"""``eta demo``: the whole system on one machine, end to end, in about three minutes.

Embedded stack → history → batch features → training set → two models → stream worker, HTTP
API and monitor as their own processes → live simulated traffic with a live dashboard → a hot
swap to the second model midway → batch predictions → the HTML report → a summary read back
from the prediction topic. Every step is the ``eta`` command the README documents.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer
from rich.console import Console
from rich.live import Live
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Column

from predictor.demo.dashboard import (
    DriftRule,
    Figures,
    Tick,
    catching_up,
    figures,
    render,
    status_line,
)
from predictor.demo.plan import ETA, DemoConfig, history_end, live_traffic, prepare_steps
from predictor.demo.processes import DemoError, Service, run_step
from predictor.demo.scrape import scrape
from predictor.models.registry import Registry
from stream_features.contract import DeliveryPrediction, OrderCreated
from stream_features.kafka_clients import consumer_config, ensure_topics
from stream_features.settings import Settings
from stream_features.stack import free_port, start_stack

__all__ = ["DemoSummary", "run_demo"]

_PLAIN_EVERY_S = 10.0
_MONITOR_WAIT_S = 60.0
"""How long the drained demo waits for the monitor to read every prediction."""
"""How often the demo prints a status line when its output is not a terminal."""


@dataclass
class DemoSummary:
    """What the demo did, written to ``summary.json`` and printed at the end."""

    out_dir: str
    seconds: float = 0.0
    orders_consumed: float = 0.0
    predictions_read: int = 0
    predictions_by_version: dict[str, int] = field(default_factory=dict)
    dead_letters: float = 0.0
    swap_at_s: float | None = None
    final: dict[str, Any] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    worker_exit: int | None = None


def _env(settings_env: dict[str, str]) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ETA_")}
    return {**base, **settings_env}


@contextmanager
def _stage(progress: Progress, title: str) -> Iterator[None]:
    task = progress.add_task(title, total=1)
    yield
    progress.update(task, completed=1, description=f"[green]✓[/] {title}")


def _sample_order(history: Path) -> OrderCreated:
    """An order shaped like the history's last one, stamped now (for the online probe)."""
    from stream_features.event_log import iter_log

    last: OrderCreated | None = None
    for line in iter_log(history):
        if isinstance(line.event, OrderCreated):
            last = line.event
    if last is None:
        raise DemoError(f"{history} holds no order")
    return last.model_copy(
        update={"order_id": f"demo-probe-{uuid.uuid4().hex[:8]}", "created_at": datetime.now(UTC)}
    )


def _probe_online(url: str, order: OrderCreated, api_key: str) -> tuple[float | None, str | None]:
    """One POST /v1/predictions; its latency (ms) and the model version that answered."""
    body = order.model_copy(update={"created_at": datetime.now(UTC)}).model_dump_json().encode()
    request = urllib.request.Request(
        f"{url}/v1/predictions",
        data=body,
        headers={"Content-Type": "application/json", "X-API-Key": api_key},
    )
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=2.0) as response:
            payload = orjson.loads(response.read())
    except (OSError, ValueError):
        return None, None
    took = (time.perf_counter() - started) * 1000
    first = payload[0] if isinstance(payload, list) else payload.get("predictions", [payload])[0]
    return took, str(first.get("model_version"))


def _wait_ready(url: str, service: Service, deadline_s: float, api_key: str = "") -> None:
    deadline = time.monotonic() + deadline_s
    request = urllib.request.Request(url, headers={"X-API-Key": api_key} if api_key else {})
    while time.monotonic() < deadline:
        service.check()
        try:
            with urllib.request.urlopen(request, timeout=1.0) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.HTTPError):
            pass
        time.sleep(0.2)  # polling a service coming up, bounded by the deadline
    raise DemoError(f"the {service.name} was not ready within {deadline_s:.0f} s ({url})")


def _read_predictions(settings: Settings, expected: int, timeout_s: float) -> Counter[str]:
    """Predictions on the topic by model version, read until ``expected`` or the deadline."""
    consumer = Consumer(
        {
            **consumer_config(settings),
            "group.id": f"eta-demo-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([settings.predictions_topic])
    versions: Counter[str] = Counter()
    seen: set[str] = set()
    deadline = time.monotonic() + timeout_s
    try:
        while len(seen) < expected and time.monotonic() < deadline:
            for message in consumer.consume(10_000, 0.5):
                if message.error() is None:
                    p = DeliveryPrediction.model_validate_json(message.value() or b"")
                    if p.order_id not in seen:
                        seen.add(p.order_id)
                        versions[p.model_version] += 1
    finally:
        consumer.close()
    return versions


def run_demo(config: DemoConfig, console: Console) -> DemoSummary:
    """Run every stage; raise ``DemoError`` naming the stage and its log when one fails."""
    started = time.monotonic()
    out = config.out_dir.resolve()
    out.mkdir(parents=True, exist_ok=True)
    logs = out / "logs"
    summary = DemoSummary(out_dir=str(out))
    api_key = uuid.uuid4().hex
    ports = {"worker": free_port(), "monitor": free_port(), "api": free_port()}
    base = Settings(  # its own embedded stack and registry, whatever ETA_* the shell exports
        data_dir=out / "stack",
        registry_dir=out / "models",
        kafka_bootstrap_servers=None,
        redis_url=None,
    )
    with ExitStack() as stack:
        with (
            _progress(console) as progress,
            _stage(progress, "start the embedded Kafka-protocol broker and Redis"),
        ):
            urls = stack.enter_context(start_stack(base))
        settings = base.model_copy(
            update={
                "kafka_bootstrap_servers": urls.kafka_bootstrap_servers,
                "redis_url": urls.redis_url,
            }
        )
        ensure_topics(settings)
        env = _env(
            {
                **urls.env(),
                "ETA_DATA_DIR": str(out / "stack"),
                "ETA_REGISTRY_DIR": str(out / "models"),
                "ETA_BATCH_OUT_DIR": str(out / "batch_predictions"),
                "ETA_API_KEY": api_key,
                "ETA_HTTP_PORT": str(ports["api"]),
                "ETA_METRICS_PORT": str(ports["worker"]),
                "ETA_MONITOR_METRICS_PORT": str(ports["monitor"]),
                "ETA_STREAM_INCLUDE_FEATURES": "true",
                "ETA_PREDICTION_TTL_S": "7200",
                "ETA_MONITOR_DRIFT_WINDOW": config.drift_window,
                # the stream starts empty, as the history did: judge drift as the training
                # rows were built, without the first settle_s (the warm-up's first orders)
                "ETA_MONITOR_DRIFT_SETTLE_S": f"{config.settle_s:g}",
            }
        )
        end = history_end(datetime.now(UTC), config)
        with _progress(console) as progress:
            for step in prepare_steps(config, end):
                with _stage(progress, step.title):
                    run_step(step.argv, env, logs / f"{step.key}.log")
        summary.paths = {
            "history": str(out / "history.parquet"),
            "offline store": str(out / "offline_store"),
            "training set": str(out / "training_set.parquet"),
            "model registry": str(out / "models"),
            "logs": str(logs),
            "stack (Redis AOF, the monitor's records)": str(out / "stack"),
        }

        services = {
            "worker": Service("stream worker", [*ETA, "predict", "stream"], env, logs / "w.log"),
            "api": Service("HTTP API", [*ETA, "serve"], env, logs / "api.log"),
            "monitor": Service("monitor", [*ETA, "monitor"], env, logs / "monitor.log"),
        }
        stack.callback(lambda: [s.stop() for s in services.values()])
        api = f"http://127.0.0.1:{ports['api']}"
        with (
            _progress(console) as progress,
            _stage(progress, "start the stream worker, the HTTP API and the monitor"),
        ):
            _wait_ready(f"{api}/readyz", services["api"], 90, api_key)
            _wait_ready(f"http://127.0.0.1:{ports['worker']}/metrics", services["worker"], 90)

        probe = _sample_order(out / "history.parquet")
        traffic = Service("traffic", live_traffic(config), env, logs / "traffic.log")
        stack.callback(traffic.stop)
        staged = Registry(out / "models").aliases(config.model_name)["staging"]
        final = _dashboard(
            config, console, services, traffic, env, ports, api, probe, summary, settings, staged
        )
        summary.final = {k: v for k, v in asdict(final).items() if v is not None}

        with _progress(console) as progress:
            with _stage(progress, "batch predictions for every store, next hour slots"):
                run_step(
                    [*ETA, "predict", "batch", "--history", str(out / "history.parquet")],
                    env,
                    logs / "batch-predict.log",
                )
            summary.paths["batch predictions"] = str(out / "batch_predictions")
            with _stage(progress, "read back every prediction from the topic"):
                versions = _read_predictions(settings, int(final.orders), timeout_s=30)
            summary.predictions_by_version = dict(versions)
            summary.predictions_read = sum(versions.values())
            with _stage(progress, "stop the services (SIGTERM: finish, flush, commit)"):
                summary.worker_exit = services["worker"].stop()
                for service in services.values():
                    service.stop()
            with _stage(progress, "write the HTML report"):
                report = out / "report"
                run_step([*ETA, "report", "--out", str(report)], env, logs / "report.log")
            summary.paths["report"] = str(report / "report.html")
    summary.seconds = round(time.monotonic() - started, 1)
    (out / "summary.json").write_text(json.dumps(asdict(summary), indent=2))
    return summary


def _dashboard(
    config: DemoConfig,
    console: Console,
    services: dict[str, Service],
    traffic: Service,
    env: dict[str, str],
    ports: dict[str, int],
    api: str,
    probe: OrderCreated,
    summary: DemoSummary,
    settings: Settings,
    staged: str,
) -> Figures:
    """The live phase: refresh the dashboard every second, swap models midway, then drain."""
    orders_topic = settings.orders_topic
    rule = _drift_rule(env)
    worker_url = f"http://127.0.0.1:{ports['worker']}/metrics"
    monitor_url = f"http://127.0.0.1:{ports['monitor']}/metrics"
    t0 = time.monotonic()
    prev = Tick(t0, scrape(worker_url), scrape(monitor_url))
    current = Figures()
    swap: threading.Thread | None = None
    settled_at: float | None = None
    # On a terminal a live dashboard; in a log or a pipe Live would print only its last frame
    # (the drained one, 0 orders/s), so a status line every _PLAIN_EVERY_S and at each phase.
    live = None if not console.is_terminal else Live(console=console, refresh_per_second=4)
    printed: tuple[float, str] | None = None
    with live or nullcontext():
        while True:
            time.sleep(1.0)  # the dashboard's refresh period, not a wait for a result
            for service in services.values():
                service.check()
            elapsed = time.monotonic() - t0
            online_ms, online_version = _probe_online(api, probe, env["ETA_API_KEY"])
            cur = Tick(
                time.monotonic(),
                scrape(worker_url),
                scrape(monitor_url),
                online_ms,
                online_version,
            )
            last = current
            current = figures(prev, cur, orders_topic, rule, settings.predictions_topic)
            if current.p50_ms is None and not catching_up(current):  # none new: the last seen
                current.p50_ms, current.p99_ms = last.p50_ms, last.p99_ms
            if swap is None and elapsed >= config.live_s / 2:
                swap = threading.Thread(target=_promote, args=(env, staged), daemon=True)
                swap.start()
                summary.swap_at_s = round(elapsed, 1)
            if catching_up(current):
                phase = "warm-up: the worker drains the burn-in backlog"
            elif traffic.alive():
                phase = f"live traffic {min(elapsed, config.live_s):.0f}/{config.live_s:.0f} s"
            else:
                phase = "draining"
            note = (
                f"model {staged} promoted at "
                f"{summary.swap_at_s:.0f} s: watch the stream's version change"
                if summary.swap_at_s is not None
                else f"model {staged} (staging) is promoted at {config.live_s / 2:.0f} s"
            )
            if live is not None:
                live.update(render(current, cur, phase, note, rule))
            elif (
                printed is None
                or printed[1] != phase.split()[0]
                or (elapsed - printed[0] >= _PLAIN_EVERY_S)
            ):
                console.print(status_line(current, cur, elapsed, phase, rule), soft_wrap=True)
                printed = (elapsed, phase.split()[0])
            prev = cur
            if not traffic.alive():
                if traffic.proc.returncode:
                    traffic.check()
                drained = current.predictions > 0 and current.orders_per_s == 0
                settled_at = settled_at or (time.monotonic() if drained else None)
                # the final drift figures are the monitor's once it has read every prediction
                # (read while it was still in the warm-up, they were the warm-up's); at most
                # _MONITOR_WAIT_S more, then as they stand
                monitored = current.monitored >= current.predictions
                waited_s = time.monotonic() - settled_at if settled_at else 0.0
                if settled_at and waited_s > 2 and (monitored or waited_s > _MONITOR_WAIT_S):
                    break
                if not settled_at and elapsed > config.live_s + 120:
                    raise DemoError("the stream worker did not drain the traffic within 2 min")
    if swap is not None:
        swap.join(30)
    summary.orders_consumed = current.orders
    summary.dead_letters = current.dead_letters
    return current


def _drift_rule(env: dict[str, str]) -> DriftRule:
    """How the demo's monitor alerts on drift: its settings' defaults and the demo's window."""
    fields = Settings.model_fields
    return DriftRule(
        window=env["ETA_MONITOR_DRIFT_WINDOW"],
        threshold=float(fields["psi_alert"].default),
        exempt=frozenset(fields["monitor_psi_exempt"].default),
        min_entities=int(fields["monitor_psi_min_entities"].default),
        min_samples=int(fields["monitor_psi_min_samples"].default),
    )


def _promote(env: dict[str, str], version: str) -> None:
    """Promote the staging model to production while traffic flows."""
    log = Path(env["ETA_DATA_DIR"]).parent / "logs" / "promote.log"
    run_step([*ETA, "models", "promote", version, "--stage", "production"], env, log)


def _progress(console: Console) -> Progress:
    return Progress(  # a long title folds: at 80 columns it cut the time column to "0…"
        SpinnerColumn(),
        TextColumn("{task.description}", table_column=Column(ratio=1, overflow="fold")),
        TimeElapsedColumn(),
        console=console,
    )

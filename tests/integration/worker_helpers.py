"""Helpers of the stream worker's integration tests: produce, read back, run a worker.

Everything here talks to the real broker and Redis of the session stack; reads wait with a
deadline for what they expect, never for a fixed time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, Message

from bench.loads import live_orders, produce
from predictor.engines.confluent import ConfluentWorker
from predictor.engines.faust_app import FaustWorker
from predictor.engines.wiring import confluent_worker, faust_worker
from predictor.serving.metrics import StreamMetrics
from predictor.serving.pipeline import BatchResult, ScoringModel
from predictor.serving.shadow_stage import ShadowStage
from stream_features.contract import OrderCreated, encode
from stream_features.kafka_clients import producer_config
from stream_features.settings import Settings
from stream_features.vectors import FeatureSource

__all__ = [
    "TopicReader",
    "WorkerProcess",
    "live_orders",
    "produce",
    "produce_orders",
    "publish_simulated",
    "running_worker",
    "worker_env",
]


def produce_orders(settings: Settings, orders: Iterable[OrderCreated]) -> int:
    return produce(
        settings, ((settings.orders_topic, o.store_id.encode(), encode(o)) for o in orders)
    )


class TopicReader:
    """Reads a topic from the beginning in a group of its own, accumulating what arrives."""

    def __init__(
        self,
        settings: Settings,
        topic: str,
        group: str | None = None,
        isolation: str = "read_uncommitted",
    ) -> None:
        self.messages: list[Message] = []
        self._consumer = Consumer(
            {
                "bootstrap.servers": settings.kafka_bootstrap_servers,
                "group.id": group or f"reader-{topic}-{time.time_ns()}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "session.timeout.ms": settings.session_timeout_ms,
                "fetch.message.max.bytes": 10_485_760,
                "isolation.level": isolation,
            }
        )
        self._consumer.subscribe([topic])

    def read_until(self, done: Callable[[list[Message]], bool], timeout_s: float) -> list[Message]:
        """Poll until ``done(messages)`` or the deadline; returns everything read so far."""
        deadline = time.monotonic() + timeout_s
        while not done(self.messages) and time.monotonic() < deadline:
            for m in self._consumer.consume(10_000, 0.2):
                if m.error() is None:
                    self.messages.append(m)
        return self.messages

    def read_for(self, seconds: float) -> list[Message]:
        """Everything that arrives within ``seconds`` (to show that nothing more comes)."""
        return self.read_until(lambda _m: False, seconds)

    def close(self) -> None:
        self._consumer.close()


@contextmanager
def running_worker(
    settings: Settings,
    features: FeatureSource,
    model: ScoringModel | Callable[[], ScoringModel],
    metrics: StreamMetrics | None = None,
    engine: str = "confluent",
    after_scored: Callable[[BatchResult], None] | None = None,
    shadow: ShadowStage | None = None,
) -> Iterator[ConfluentWorker | FaustWorker]:
    """A worker of ``engine`` in a thread; stopped (finish, flush, commit) when the block ends.
    ``shadow`` scores every batch with a challenger too."""
    models = model if callable(model) and not hasattr(model, "predict") else (lambda: model)
    worker: ConfluentWorker | FaustWorker
    if engine == "faust":
        worker = faust_worker(settings, features, models, metrics, after_scored, shadow)  # type: ignore[arg-type]  # models: a model or a callable giving one, narrowed at run time above
    else:
        worker = confluent_worker(settings, features, models, metrics, after_scored, shadow)  # type: ignore[arg-type]  # as above
    stop = threading.Event()
    failure: list[BaseException] = []

    def target() -> None:
        try:
            worker.run(stop)
        except BaseException as exc:  # re-raised in the test's thread
            failure.append(exc)

    thread = threading.Thread(target=target, name=f"{engine}-worker", daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        stop.set()
        thread.join(60)
        assert not thread.is_alive(), "the worker did not stop within 60 s"
    if failure:
        raise failure[0]


def worker_env(settings: Settings) -> dict[str, str]:
    """The environment of an ``eta predict stream`` subprocess that sees what ``settings`` say."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETA_")}
    for name, value in settings.model_dump(exclude_defaults=True).items():
        if name == "kafka":
            env.update({f"ETA_KAFKA__{k.upper()}": str(v) for k, v in value.items()})
        elif value is not None:
            secret = getattr(value, "get_secret_value", None)
            env[f"ETA_{name.upper()}"] = str(secret() if secret else value)
    return env


class WorkerProcess:
    """``eta predict stream`` in a subprocess, its JSON-lines log in a file."""

    def __init__(self, settings: Settings, log_path: Path, engine: str = "confluent") -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from predictor.cli import main; main()",
                "predict",
                "stream",
                "--engine",
                engine,
            ],
            env=worker_env(settings),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for raw in self.log_path.read_bytes().splitlines():
            try:
                lines.append(orjson.loads(raw))
            except orjson.JSONDecodeError:
                lines.append({"msg": raw.decode(errors="replace")})
        return lines

    def wait_for_log(self, text: str, timeout_s: float = 60.0, count: int = 1) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if sum(text in str(line.get("msg")) for line in self.log_lines()) >= count:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        tail = self.log_path.read_text(errors="replace")[-3000:]
        raise AssertionError(f"no {text!r} in the worker's log (exit {self.proc.poll()}):\n{tail}")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout_s)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
            self._log.close()
        return code


def publish_simulated(settings: Settings, n_orders: int, seed: int = 1) -> list[OrderCreated]:
    """The last hour of a busy simulated marketplace, up to its ``n_orders``-th order, on the
    settings' topics (every kind of event, each on its topic under its key); returns the orders.
    """
    from producers.config import SimConfig
    from producers.publisher import Publisher, Routes
    from producers.simulator import Marketplace

    now = datetime.now(UTC)
    market = Marketplace(SimConfig(orders_per_day=n_orders * 24 * 10), seed=seed)
    orders: list[OrderCreated] = []
    config = {**producer_config(settings), "linger.ms": 20}
    with Publisher(config, Routes.from_settings(settings)) as publisher:
        for event in market.events(now - timedelta(hours=1), now):
            publisher.publish(event)
            if isinstance(event, OrderCreated):
                orders.append(event)
                if len(orders) >= n_orders:
                    break
    return orders

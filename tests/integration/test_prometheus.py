"""A real Prometheus (Debian's ``prometheus`` package) against a running worker, API and
monitor: every query of the shipped Grafana dashboard (``docs/ops/grafana``) returns series,
and ``promtool`` holds the shipped scrape config and alert rules valid.

The services run as processes on the session's broker and Redis, with orders (one of them
poison), API requests and deliveries of the predicted orders, so that every panel has
something to show; Prometheus scrapes them each second and is asked through its HTTP API.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from stream_features.contract import OrderDelivered, encode
from stream_features.kafka_clients import ensure_topics
from stream_features.settings import Settings
from stream_features.stack import free_port
from tests.integration.worker_helpers import (
    TopicReader,
    WorkerProcess,
    live_orders,
    produce,
    produce_orders,
    worker_env,
)
from tests.integration.worker_models import registered_model
from tests.reliability.services import ServeProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OPS = Path(__file__).resolve().parents[2] / "docs" / "ops"
DASHBOARD = OPS / "grafana" / "dashboards" / "etastream.json"
PROMETHEUS, PROMTOOL = shutil.which("prometheus"), shutil.which("promtool")
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None or PROMTOOL is None,
    reason="Debian's prometheus is not installed (.ci/run installs it: apt-get install prometheus)",
)


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target of the dashboard."""
    board = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in board["panels"] for t in p["targets"]]


def _local_config(tmp_path: Path, targets: dict[str, int] | None = None) -> Path:
    """The shipped config with its rule file at its path here and, given ``targets``, static
    loopback targets in place of the compose network's names."""
    text = (OPS / "prometheus.yml").read_text()
    text = text.replace("/etc/prometheus/alerts.yml", str(OPS / "alerts.yml"))
    if targets is not None:
        jobs = "".join(
            f"  - job_name: {job}\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
            for job, port in targets.items()
        )
        text = text[: text.index("scrape_configs:")] + "scrape_configs:\n" + jobs
        text = text.replace("scrape_interval: 15s", "scrape_interval: 1s")
    path = tmp_path / "prometheus.yml"
    path.write_text(text)
    return path


@needs_prometheus
def test_promtool_accepts_the_shipped_config_and_alert_rules(tmp_path: Path) -> None:
    assert PROMTOOL is not None
    for args in (
        ["check", "rules", str(OPS / "alerts.yml")],
        ["check", "config", str(_local_config(tmp_path))],
    ):
        done = subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr


@contextlib.contextmanager
def _process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@needs_prometheus
def test_every_dashboard_query_returns_series(settings: Settings, tmp_path: Path) -> None:
    assert PROMETHEUS is not None
    ports = {"worker": free_port(), "api": free_port(), "monitor": free_port()}
    served = registered_model(settings, tmp_path).model_copy(
        update={
            "metrics_port": ports["worker"],
            "http_port": ports["api"],
            "http_host": "127.0.0.1",
            "monitor_metrics_port": ports["monitor"],
            "monitor_group": f"{settings.consumer_group}-monitor",
            "monitor_publish_s": 0.5,
        }
    )
    ensure_topics(served)
    prom_port = free_port()
    config = _local_config(tmp_path, {f"etastream-{k}": v for k, v in ports.items()})
    cli = [sys.executable, "-c", "from predictor.cli import main; main()"]
    prometheus = [
        PROMETHEUS,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{prom_port}",
    ]
    worker = WorkerProcess(served, tmp_path / "worker.log")
    api = ServeProcess(served, tmp_path / "serve.log")
    with (
        _process([*cli, "monitor"], worker_env(served), tmp_path / "monitor.log"),
        _process(prometheus, {}, tmp_path / "prometheus.log"),
    ):
        try:
            api.wait_ready()
            worker.wait_for_log("partitions assigned")
            orders = live_orders(600, "prom")
            produce_orders(served, orders)
            produce(served, [(served.orders_topic, b"s1", b"poison: not JSON")])
            reader = TopicReader(served, served.predictions_topic)
            reader.read_until(lambda m: len(m) >= len(orders), timeout_s=60)
            reader.close()
            now = datetime.now(UTC)
            deliveries = [
                OrderDelivered(
                    order_id=o.order_id,
                    store_id=o.store_id,
                    market_id=o.market_id,
                    delivered_at=now + timedelta(seconds=60 + i % 900),
                )
                for i, o in enumerate(orders)
            ]
            produce(
                served,
                [(served.deliveries_topic, d.store_id.encode(), encode(d)) for d in deliveries],
            )
            with httpx.Client(base_url=api.base, timeout=5) as client:
                for o in orders[:20]:
                    client.post("/v1/predictions", content=o.model_dump_json())
            empty = _poll_queries(prom_port, timeout_s=120)
        finally:
            api.stop()
            worker.stop()
    assert not empty, f"dashboard queries without series: {empty}"


def _poll_queries(port: int, timeout_s: float) -> list[tuple[str, str]]:
    """Ask Prometheus every dashboard query until each returns a series; those that never did."""
    waiting = dashboard_queries()
    deadline = time.monotonic() + timeout_s
    base = f"http://127.0.0.1:{port}/api/v1/query"
    while waiting and time.monotonic() < deadline:
        left = []
        for title, expr in waiting:
            try:
                reply = httpx.get(base, params={"query": expr}, timeout=5).json()
            except (httpx.TransportError, ValueError):
                left.append((title, expr))
                continue
            assert reply.get("status") == "success", (expr, reply)
            if not reply["data"]["result"]:
                left.append((title, expr))
        waiting = left
        if waiting:
            time.sleep(1.0)
    return waiting

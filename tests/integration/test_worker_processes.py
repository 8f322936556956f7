"""``eta predict stream`` as real processes: SIGTERM commits and exits 0; SIGKILL loses nothing.

Each test starts worker subprocesses in the test's own group and topics, with a real model in
the test's own registry, and counts what arrives on the predictions topic, with deadlines.
"""

from __future__ import annotations

import signal
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from stream_features.kafka_clients import consumer_config, ensure_topics
from stream_features.settings import Settings
from stream_features.stack import free_port
from tests.integration.worker_helpers import (
    TopicReader,
    WorkerProcess,
    live_orders,
    produce_orders,
)
from tests.integration.worker_models import registered_model

pytestmark = pytest.mark.integration


@pytest.fixture()
def served(settings: Settings, tmp_path: Path) -> Settings:
    ensure_topics(settings)
    return registered_model(settings, tmp_path)


def _order_ids(messages: list) -> Counter[bytes]:  # type: ignore[type-arg]  # confluent Message lists: its stubs are not installed
    return Counter(m.key() for m in messages)


@pytest.mark.parametrize("engine", ["confluent", "faust"])
def test_sigterm_finishes_commits_and_exits_0(
    served: Settings, tmp_path: Path, engine: str
) -> None:
    served = served.model_copy(update={"metrics_port": free_port()})
    orders = live_orders(5000, "t")
    produce_orders(served, orders)
    reader = TopicReader(served, served.predictions_topic)
    worker = WorkerProcess(served, tmp_path / "worker.log", engine)
    got = reader.read_until(lambda m: len(m) >= len(orders), timeout_s=60)
    assert set(_order_ids(got)) == {o.order_id.encode() for o in orders}
    scraped = _scrape_until(served.metrics_port, "eta_stream_predictions_total 5000.0")
    assert f'eta_stream_model_info{{name="{served.model_name}",version="1"}} 1.0' in scraped
    assert worker.stop(signal.SIGTERM) == 0
    stopped = [line for line in worker.log_lines() if line.get("msg") == "stream worker stopped"]
    assert stopped and stopped[0]["uncommitted_batches"] == 0 and stopped[0]["commits"] > 0
    reader.close()

    # the group's committed offsets cover every order (a fetch, not a join)
    consumer = Consumer(consumer_config(served))
    parts = [TopicPartition(served.orders_topic, p) for p in range(served.topic_partitions)]
    committed = consumer.committed(parts, timeout=10)
    consumer.close()
    assert sum(max(tp.offset, 0) for tp in committed) == len(orders)
    if engine == "confluent":  # Tansu keeps an empty group's protocol: faust's refuses others
        _new_member_reads_only_what_comes_next(served)


def _scrape_until(port: int, text: str, timeout_s: float = 30.0) -> str:
    """The worker's /metrics page once it contains ``text``."""
    deadline = time.monotonic() + timeout_s
    page = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
                page = resp.read().decode()
        except OSError:
            page = ""
        if text in page:
            return page
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in /metrics:\n{page[-2000:]}")


def _new_member_reads_only_what_comes_next(served: Settings) -> None:
    """A new member of the group starts after everything already predicted: once assigned, a
    marker order produced then is the first and only record it reads."""
    assigned = threading.Event()
    consumer = Consumer(consumer_config(served))
    consumer.subscribe(
        [served.orders_topic, served.dasher_events_topic, served.deliveries_topic],
        on_assign=lambda _c, _p: assigned.set(),
    )
    seen: list[bytes] = []
    deadline = time.monotonic() + 30
    marker = live_orders(1, "marker")
    while time.monotonic() < deadline and not any(b"marker0" in v for v in seen):
        seen += [m.value() or b"" for m in consumer.consume(1000, 0.2) if m.error() is None]
        if assigned.is_set() and marker:
            produce_orders(served, marker)
            marker = []
    consumer.close()
    assert len(seen) == 1, f"{len(seen)} records read again after a clean stop"
    assert b'"order_id":"marker0"' in seen[0]


@pytest.mark.parametrize("engine", ["confluent", "faust"])
def test_sigkill_mid_stream_loses_no_order_and_duplicates_are_counted(
    served: Settings, tmp_path: Path, engine: str
) -> None:
    total, chunk = 30_000, 1_000
    orders = live_orders(total, "k")
    expected = {o.order_id.encode() for o in orders}
    live = TopicReader(served, served.predictions_topic)
    a = WorkerProcess(served, tmp_path / "a.log", engine)
    b = WorkerProcess(served, tmp_path / "b.log", engine)
    workers = [a, b]

    def stream() -> None:  # a steady stream rather than one burst, so the kill lands mid-way
        for start in range(0, total, chunk):
            produce_orders(served, orders[start : start + chunk])
            time.sleep(0.1)

    producer = threading.Thread(target=stream, daemon=True)
    try:
        a.wait_for_log("partitions assigned")
        b.wait_for_log("partitions assigned")
        producer.start()
        live.read_until(lambda m: len(m) >= total // 4, timeout_s=60)
        a.stop(signal.SIGKILL)
        workers.append(WorkerProcess(served, tmp_path / "a2.log", engine))
        producer.join(120)
        live.read_until(lambda m: expected <= set(_order_ids(m)), timeout_s=120)
    finally:
        codes = [w.stop() for w in workers][1:]  # the first was killed
        live.close()
    # The count is taken from the whole topic, read again by a reader of its own once every
    # worker has stopped: what the live reader saw (the kill's trigger) also depends on the
    # broker serving a fetch at the right moment, and a prediction is delivered once it is in
    # the topic.
    full = TopicReader(served, served.predictions_topic)
    got = full.read_until(lambda m: expected <= set(_order_ids(m)), timeout_s=60)
    full.close()
    counts = _order_ids(got)
    missing = expected - set(counts)
    duplicates = sum(n - 1 for n in counts.values())
    print(f"\n{engine}: {total} orders, {len(got)} predictions, {duplicates} duplicates")
    assert not missing, (
        f"{len(missing)} orders never predicted, e.g. {sorted(missing)[:3]}; the live reader "
        f"had missed {len(expected - set(_order_ids(live.messages)))}; "
        f"dead letters {_count(served, served.dlq_topic)}; workers: {_stopped(workers)}"
    )
    assert codes == [0, 0], f"exit codes {codes}: {_stopped(workers)}"


def _count(settings: Settings, topic: str) -> int:
    """How many records ``topic`` holds: read until two seconds pass with nothing new."""
    reader = TopicReader(settings, topic)
    reader.read_for(6.0)  # the group join takes about 3 s
    seen = -1
    while seen != len(reader.messages):
        seen = len(reader.messages)
        reader.read_for(2.0)
    reader.close()
    return seen


def _stopped(workers: list[WorkerProcess]) -> list[object]:
    """Each worker's closing account (its ``stream worker stopped`` line), or its warnings."""
    out: list[object] = []
    for worker in workers:
        lines = worker.log_lines()
        stopped = [line for line in lines if line.get("msg") == "stream worker stopped"]
        warned = [line.get("msg") for line in lines if line.get("level") in ("warning", "error")]
        out.append(stopped[-1] if stopped else {"warnings": warned[-5:]})
    return out

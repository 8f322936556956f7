"""``eta monitor`` as the container runs it: bad records dead-lettered, metrics, clean stop."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from predictor.monitoring.messages import MonitorSummary, decode_monitor_record
from predictor.serving.dlq import decode_dead_letter
from stream_features.contract import DeliveryPrediction, OrderDelivered, encode
from stream_features.kafka_clients import ensure_topics
from stream_features.settings import Settings
from stream_features.stack import free_port
from tests.integration.worker_helpers import TopicReader, produce, worker_env
from tests.reliability.services import fault_stack

pytestmark = pytest.mark.integration


def scrape(port: int, deadline_s: float = 30.0) -> str:
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                return str(r.read().decode())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def dump_stacks(pid: int) -> str:
    """The Python and native stacks of every thread of ``pid`` (py-spy), or why not."""
    if shutil.which("py-spy") is None:
        return "(py-spy not installed: no stacks)"
    try:
        done = subprocess.run(
            ["py-spy", "dump", "--native", "--pid", str(pid)],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"(py-spy dump failed: {exc!r})"
    return f"py-spy dump of {pid}:\n{done.stdout}{done.stderr}"


def test_eta_monitor_rejects_bad_records_with_reasons_and_stops_cleanly(
    settings: Settings, tmp_path: Path
) -> None:
    port = free_port()
    settings = settings.model_copy(
        update={
            "monitor_group": f"{settings.consumer_group}-monitor",
            "monitor_publish_s": 0.5,
            "monitor_metrics_port": port,
        }
    )
    ensure_topics(settings)
    now = datetime.now(UTC).replace(microsecond=0)
    good = DeliveryPrediction(
        order_id="o1",
        store_id="s1",
        market_id="m1",
        created_at=now - timedelta(minutes=40),
        predicted_duration_s=1800.0,
        predicted_delivery_at=now - timedelta(minutes=10),
        model_name="eta-not-registered",
        model_version="7",
        mode="streaming",
        served_at=now - timedelta(minutes=40),
    )
    future = good.model_copy(update={"order_id": "o2", "created_at": now + timedelta(days=1)})
    truth = OrderDelivered(order_id="o1", store_id="s1", market_id="m1", delivered_at=now)
    produce(
        settings,
        [
            (settings.predictions_topic, b"o0", b"\xff not json"),
            (settings.predictions_topic, b"o1", encode(good)),
            (settings.predictions_topic, b"o2", encode(future)),
            (settings.deliveries_topic, b"s1", orjson.dumps({"type": "OrderDelivered"})),
            (settings.deliveries_topic, b"s1", encode(truth)),
        ],
    )
    log_path = tmp_path / "monitor.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from predictor.cli import main; main()", "monitor"],
            env=worker_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    dlq = TopicReader(settings, settings.dlq_topic)
    monitoring = TopicReader(settings, settings.monitoring_topic)
    try:
        letters = [
            decode_dead_letter(m.value()) for m in dlq.read_until(lambda ms: len(ms) >= 3, 60)
        ]

        def joined(messages: list) -> bool:  # type: ignore[type-arg]  # confluent Message lists: its stubs are not installed
            records = [decode_monitor_record(m.value()) for m in messages]
            return any(isinstance(r, MonitorSummary) and r.totals.get("joined") for r in records)

        summaries = monitoring.read_until(joined, 30)
        metrics = scrape(port)
    finally:
        dlq.close()
        monitoring.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    output = log_path.read_text(errors="replace")

    assert code == 0, output[-3000:]
    reasons = [letter.reason for letter in letters]
    assert len(letters) == 3, output[-3000:]
    assert any("not valid JSON" in r for r in reasons)
    assert any("in the future" in r for r in reasons)
    assert any("Field required" in r for r in reasons)  # the delivery without its fields
    assert {letter.source_topic for letter in letters} == {
        settings.predictions_topic,
        settings.deliveries_topic,
    }
    assert joined(summaries)
    last = decode_monitor_record(summaries[-1].value())
    assert isinstance(last, MonitorSummary)
    assert last.totals["rejected"] == 3
    errors = {(e.scope, e.key): e for e in last.errors}
    assert errors[("market", "m1")].mae_s == pytest.approx(600.0)  # 30 min predicted, 40 taken
    assert [d.reference for d in last.drift] in ([], ["unavailable"])
    assert "eta_monitor_joined_total 1.0" in metrics
    assert 'eta_monitor_rejected_total{topic="' in metrics
    assert "record rejected" in output and "monitor stopped" in output


@pytest.mark.parametrize(
    "publish_s",
    [
        pytest.param(3600.0, id="nothing-committed-yet"),
        pytest.param(0.2, id="publishing-when-it-dies"),
    ],
)
def test_eta_monitor_stops_on_one_sigterm_with_the_broker_down_and_says_what_is_uncommitted(
    tmp_path: Path, publish_s: float
) -> None:
    """The broker dies under a running monitor: one SIGTERM stops it within 10 s, exit 3, and
    the last lines say what it could not commit (issue #22: it used to retry for 69 s).

    With an hour between publishes nothing was committed before the broker went: both
    records are left over. Publishing every 0.2 s, the monitor is waiting on the dead broker
    for its summaries when the signal comes (the two records may be committed by then).
    """
    with fault_stack(tmp_path / "stack") as faults:
        port = free_port()  # after the broker has taken its own
        settings = faults.settings(monitor_publish_s=publish_s, monitor_metrics_port=port)
        ensure_topics(settings)
        now = datetime.now(UTC).replace(microsecond=0)
        made = now - timedelta(minutes=40)
        prediction = DeliveryPrediction(
            order_id="o1",
            store_id="s1",
            market_id="m1",
            created_at=made,
            predicted_duration_s=1800.0,
            predicted_delivery_at=made + timedelta(minutes=30),
            model_name="eta-not-registered",
            model_version="7",
            mode="streaming",
            served_at=made,
        )
        truth = OrderDelivered(order_id="o1", store_id="s1", market_id="m1", delivered_at=now)
        produce(
            settings,
            [
                (settings.predictions_topic, b"o1", encode(prediction)),
                (settings.deliveries_topic, b"s1", encode(truth)),
            ],
        )
        log_path = tmp_path / "monitor.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-c", "from predictor.cli import main; main()", "monitor"],
                env=worker_env(settings),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        try:
            deadline = time.monotonic() + 60
            while "eta_monitor_joined_total 1.0" not in scrape(port):
                assert time.monotonic() < deadline, log_path.read_text(errors="replace")[-3000:]
                time.sleep(0.1)
            faults.kill_broker()
            proc.send_signal(signal.SIGTERM)
            sent = time.monotonic()
            stacks = ""
            code: int | None = None
            try:
                code = proc.wait(10)
            except subprocess.TimeoutExpired:
                stacks = dump_stacks(proc.pid)  # where it hangs, for the failure message
                with contextlib.suppress(subprocess.TimeoutExpired):
                    code = proc.wait(20)
            took_s = time.monotonic() - sent
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    output = log_path.read_text(errors="replace")
    print(f"SIGTERM to exit: {took_s:.1f} s")  # the measurement docs/monitoring.md quotes
    lines = [orjson.loads(raw) for raw in output.splitlines() if raw.startswith("{")]
    assert took_s <= 10.0, f"{took_s:.1f} s from SIGTERM to exit\n{output[-3000:]}\n{stacks}"
    assert code == 3, output[-3000:]
    stopped = [line for line in lines if line["msg"] == "monitor stopped"]
    assert len(stopped) == 1, output[-3000:]
    stats = stopped[0]
    assert stats["unacknowledged"] > 0  # the last summaries: the broker never took them
    said = [line for line in lines if line["level"] == "error" and "within 5 s" in line["msg"]]
    assert len(said) == 1, output[-3000:]
    assert said[0]["records"] == stats["uncommitted_records"]
    if publish_s > 60:
        assert stats["commits"] == 0 and stats["uncommitted_records"] == 2
        assert "2 records left uncommitted" in said[0]["msg"]
        assert len(said[0]["partitions"]) == 2

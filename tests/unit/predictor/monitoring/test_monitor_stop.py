"""A stop of the monitor's service never waits on librdkafka past its deadline.

librdkafka's synchronous commit has no timeout of its own: with the group coordinator gone it
waits a session timeout, with the broker dead while the commit was in flight up to a socket
timeout, and ``Consumer.close`` waits for any commit still outstanding. The fakes below behave
that way (a commit is never answered, close waits for it), so a stop that reaches one of those
calls hangs here instead of finishing within ``stop_timeout_s`` + ``CLOSE_GRACE_S``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from predictor.monitoring import service as service_module
from predictor.monitoring.core import Monitor, MonitorConfig
from predictor.monitoring.intake import IntakeConfig
from predictor.monitoring.join import MemoryJoin
from predictor.monitoring.service import MonitorService, ServiceOptions
from predictor.serving.records import RawRecord
from stream_features.contract import DeliveryPrediction, OrderDelivered, encode

STOP_S = 0.5
GRACE_S = 0.3


class Record(RawRecord):
    def error(self) -> None:
        return None


class FakeConsumer:
    """Answers commits only while the coordinator is ``up``; ``close`` waits for an unanswered
    one, and a synchronous commit that is not answered blocks, both until ``release``."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.on_commit: Callable[[Any, list[Any]], None] | None = config.get("on_commit")
        self.up = True
        self.records: list[Record] = []
        self.sent: list[list[Any]] = []  # commits sent, answered or not
        self.unanswered: list[list[Any]] = []
        self.release = threading.Event()

    def subscribe(self, _topics: list[str], **_callbacks: Any) -> None:
        pass

    def _serve(self, timeout_s: float) -> None:
        if self.up and self.unanswered and self.on_commit is not None:
            for offsets in self.unanswered:
                self.on_commit(None, offsets)
            self.unanswered = []
        else:
            time.sleep(timeout_s)

    def consume(self, _n: int, timeout_s: float) -> list[Record]:
        out, self.records = self.records, []
        if not out:
            self._serve(timeout_s)
        return out

    def poll(self, timeout_s: float) -> None:
        self._serve(timeout_s)

    def commit(self, offsets: list[Any], asynchronous: bool) -> None:
        self.sent.append(offsets)
        if asynchronous:
            self.unanswered.append(offsets)
        elif not self.up:
            self.release.wait()

    def assignment(self) -> list[Any]:
        return []

    def close(self) -> None:
        if self.unanswered:
            self.release.wait()


class FakeProducer:
    """Acknowledges what it is given while the broker is ``up``."""

    def __init__(self, _config: dict[str, Any]) -> None:
        self.up = True
        self.queued: list[Callable[[Any, Any], None]] = []

    def produce(self, _topic: str, _value: bytes, _key: bytes | None, on_delivery: Any) -> None:
        self.queued.append(on_delivery)

    def poll(self, _timeout_s: float) -> int:
        return self.flush(0.0)

    def flush(self, timeout_s: float) -> int:
        if not self.up:
            time.sleep(timeout_s)
            return len(self.queued)
        for on_delivery in self.queued:
            on_delivery(None, None)
        self.queued = []
        return 0


def records() -> list[Record]:
    now = datetime.now(UTC).replace(microsecond=0)
    made = now - timedelta(minutes=40)
    prediction = DeliveryPrediction(
        order_id="o1",
        store_id="s1",
        market_id="m1",
        created_at=made,
        predicted_duration_s=1800.0,
        predicted_delivery_at=made + timedelta(minutes=30),
        model_name="eta",
        model_version="1",
        mode="streaming",
        served_at=made,
    )
    truth = OrderDelivered(order_id="o1", store_id="s1", market_id="m1", delivered_at=now)
    return [
        Record(encode(prediction), "predictions", 0, 7),
        Record(encode(truth), "deliveries", 1, 3),
    ]


def fakes(service: MonitorService) -> tuple[FakeConsumer, FakeProducer]:
    return cast(FakeConsumer, service._consumer), cast(FakeProducer, service._producer)


@pytest.fixture
def monitor(monkeypatch: pytest.MonkeyPatch) -> Iterator[MonitorService]:
    monkeypatch.setattr(service_module, "Consumer", FakeConsumer)
    monkeypatch.setattr(service_module, "Producer", FakeProducer)
    monkeypatch.setattr(service_module, "CLOSE_GRACE_S", GRACE_S)
    service = MonitorService(
        {},
        {},
        MemoryJoin(),
        Monitor(MonitorConfig(), lambda _n, _v: None),
        IntakeConfig("deliveries", "predictions"),
        ServiceOptions(
            "deliveries", "predictions", "monitoring", "dlq", publish_s=0.05, stop_timeout_s=STOP_S
        ),
    )
    yield service
    fakes(service)[0].release.set()  # threads left behind end


def stop_after(
    service: MonitorService, ready: Callable[[], bool], die: Callable[[], None]
) -> float:
    """Run the service until ``ready``, then ``die`` (the broker goes) and stop it: the
    seconds from the stop to ``run`` returning."""
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    fakes(service)[0].records = records()
    thread.start()
    deadline = time.monotonic() + 10
    while not ready():
        assert time.monotonic() < deadline and thread.is_alive(), "the service did not start"
        time.sleep(0.01)
    die()
    stop.set()
    sent = time.monotonic()
    thread.join(STOP_S + GRACE_S + 3.0)
    assert not thread.is_alive(), "the stop waited on the dead broker"
    return time.monotonic() - sent


def test_a_commit_in_flight_when_the_broker_dies_does_not_hold_the_stop(
    monitor: MonitorService, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="etastream.monitor")
    consumer, producer = fakes(monitor)
    consumer.up = False  # the output is acknowledged, the commit after it never answered

    def die() -> None:
        producer.up = False

    took = stop_after(monitor, lambda: bool(consumer.sent), die)

    assert took < STOP_S + GRACE_S + 1.0
    assert monitor.stats.commits == 0  # never answered: not counted as committed
    assert monitor.stats.uncommitted_records == 2
    assert monitor.stats.unacknowledged > 0
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(said) == 1 and said[0].startswith("2 records left uncommitted: "), said
    assert "did not leave the group" in caplog.text


def test_a_coordinator_that_never_answers_the_last_commit_is_said_and_does_not_hold_the_stop(
    monitor: MonitorService, caplog: pytest.LogCaptureFixture
) -> None:
    """The output is acknowledged, but the commit at the stop gets no answer."""
    consumer = fakes(monitor)[0]
    monitor._o = ServiceOptions(  # no publish before the stop: close commits
        "deliveries", "predictions", "monitoring", "dlq", publish_s=3600, stop_timeout_s=STOP_S
    )

    def die() -> None:
        consumer.up = False

    took = stop_after(monitor, lambda: monitor.stats.records == 2, die)

    assert took < STOP_S + GRACE_S + 1.0
    assert len(consumer.sent) == 1 and monitor.stats.commits == 0
    assert monitor.stats.uncommitted_records == 2 and monitor.stats.unacknowledged == 0
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(said) == 1, said
    assert said[0].startswith("2 records left uncommitted: the broker did not confirm the commit")


def test_with_the_broker_up_the_stop_commits_and_counts_it(monitor: MonitorService) -> None:
    consumer = fakes(monitor)[0]
    took = stop_after(monitor, lambda: monitor.stats.commits >= 1, lambda: None)

    assert took < STOP_S
    assert monitor.stats.uncommitted_records == 0 and monitor.stats.unacknowledged == 0
    assert not consumer.unanswered
    committed = {(tp.topic, tp.partition, tp.offset) for c in consumer.sent for tp in c}
    assert {("predictions", 0, 8), ("deliveries", 1, 4)} <= committed

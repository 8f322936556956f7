"""Done-when, end to end: the monitor on the real broker and Redis sees the injected shift.

The shocked run of ``bench/monitor_scenario.py`` (a dasher shortage in one market, scored by
a registered model through the serving core, features included) is produced to the test's
predictions and deliveries topics; ``eta monitor``'s service reads them, joins them in Redis
and publishes to the monitoring topic, where the test reads the MAE alert of the shocked
market and a PSI alert on a market feature, both within one window of the shock. Retraining
is on: the first MAE or PSI alert retrains on the recorded pairs in the background, and the
test reads its report and finds the new version at staging (at production only if it won).
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from confluent_kafka import Message

from bench.monitor_scenario import (
    MODEL_NAME,
    SHOCK_MARKET,
    SHOCK_MS,
    scenario_records,
    scenario_registry,
)
from predictor.models.registry import Registry
from predictor.monitoring.core import Monitor, MonitorConfig
from predictor.monitoring.intake import IntakeConfig
from predictor.monitoring.join import JoinOp, JoinResult, MemoryJoin
from predictor.monitoring.messages import (
    MonitorAlert,
    MonitorSummary,
    RetrainReport,
    decode_monitor_record,
)
from predictor.monitoring.metrics import MonitorMetrics
from predictor.monitoring.recording import read_joined, read_summaries
from predictor.monitoring.report import FIGURES, render_report
from predictor.monitoring.rolling import WINDOWS
from predictor.monitoring.runner import build_service, record_dir
from predictor.monitoring.service import MonitorService, ServiceOptions
from stream_features.contract import OrderDelivered
from stream_features.kafka_clients import consumer_config, ensure_topics, producer_config
from stream_features.settings import Settings
from tests.integration.worker_helpers import TopicReader, produce

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@contextmanager
def running(service: MonitorService) -> Iterator[MonitorService]:
    stop, failure = threading.Event(), []

    def target() -> None:
        try:
            service.run(stop)
        except BaseException as exc:  # re-raised in the test's thread
            failure.append(exc)

    thread = threading.Thread(target=target, name="monitor", daemon=True)
    thread.start()
    try:
        yield service
    finally:
        stop.set()
        thread.join(60)
        assert not thread.is_alive(), "the monitor did not stop within 60 s"
    if failure:
        raise failure[0]


def monitor_settings(settings: Settings, registry_dir: Path) -> Settings:
    shutil.copytree(scenario_registry(), registry_dir)  # retraining registers versions here
    return settings.model_copy(
        update={
            "registry_dir": registry_dir,
            "model_name": MODEL_NAME,
            "monitor_group": f"{settings.consumer_group}-monitor",
            "monitor_min_samples": 50,  # the shortage starves m1 of deliveries
            "monitor_publish_s": 1.0,
            "monitor_retrain": True,
        }
    )


Record = MonitorAlert | MonitorSummary | RetrainReport


def records_of(messages: list[Message]) -> list[Record]:
    return [decode_monitor_record(m.value()) for m in messages]


def retrained(records: list[Record]) -> RetrainReport | None:
    """The first retraining that trained (one triggered before any pair was joined skips)."""
    return next(
        (r for r in records if isinstance(r, RetrainReport) and r.outcome != "skipped"), None
    )


def shift_alerts(records: list[Record]) -> dict[str, MonitorAlert]:
    found: dict[str, MonitorAlert] = {}
    for r in records:
        if not isinstance(r, MonitorAlert) or r.state != "firing":
            continue
        if r.kind == "mae" and r.key == SHOCK_MARKET:
            found.setdefault("mae", r)
        if r.kind == "psi" and (r.feature or "").startswith("market__"):
            found.setdefault("psi", r)
    return found


def test_the_monitor_alerts_on_an_injected_shortage_through_kafka_and_redis(
    settings: Settings, key_prefix: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="etastream.monitor")
    settings = monitor_settings(settings, tmp_path / "models")
    ensure_topics(settings)
    records = scenario_records(True)
    topics = {"predictions": settings.predictions_topic, "deliveries": settings.deliveries_topic}
    produced = produce(settings, ((topics[r.topic], r.key, r.value) for r in records))
    assert produced == len(records)

    metrics = MonitorMetrics()
    service = build_service(settings, key_prefix=key_prefix + "mon:", metrics=metrics)
    reader = TopicReader(settings, settings.monitoring_topic)
    try:
        with running(service):
            messages = reader.read_until(
                lambda ms: (
                    len(shift_alerts(records_of(ms))) == 2
                    and retrained(records_of(ms)) is not None
                    and service.stats.records >= produced
                ),
                timeout_s=120,
            )
        messages = reader.read_until(
            lambda ms: any(isinstance(r, MonitorSummary) for r in records_of(ms)), 10
        )
    finally:
        reader.close()

    seen = records_of(messages)
    alerts = shift_alerts(seen)
    assert set(alerts) == {"mae", "psi"}, [r for r in seen if isinstance(r, MonitorAlert)]
    for alert in alerts.values():
        at_ms = alert.event_time.timestamp() * 1000
        assert SHOCK_MS < at_ms < SHOCK_MS + WINDOWS[settings.monitor_drift_window] * 1000
        assert alert.value > alert.threshold and alert.samples >= 50
    assert alerts["mae"].window == "1h" and alerts["psi"].window == "24h"

    stats = service.stats
    assert stats.records == produced and stats.rejected == 0
    status = [r.getMessage() for r in caplog.records if r.getMessage().startswith("monitoring: ")]
    assert status and "joined with their delivery, 15 min MAE" in status[0], status
    predicted = {r.key for r in records if r.topic == "predictions"}
    delivered = {
        OrderDelivered.model_validate_json(r.value).order_id.encode()
        for r in records
        if r.topic == "deliveries"
    }
    assert stats.predictions == len(predicted)
    assert stats.joined == len(predicted & delivered)  # orders still queued have no outcome yet

    summary = next(r for r in reversed(seen) if isinstance(r, MonitorSummary) and r.window == "1h")
    keys = {(e.scope, e.key) for e in summary.errors}
    assert {("all", "*"), ("market", SHOCK_MARKET), ("model", "eta-shock:1")} <= keys
    assert summary.drift and summary.drift[0].with_features == summary.drift[0].predictions
    assert metrics.registry.get_sample_value("eta_monitor_joined_total") == stats.joined
    assert (
        metrics.registry.get_sample_value(
            "eta_monitor_mae_seconds", {"window": "1h", "scope": "market", "key": SHOCK_MARKET}
        )
        is not None
    )

    directory = record_dir(settings)
    joined = read_joined(directory)
    assert joined.height == stats.joined
    assert {s.window for s in read_summaries(directory)} == set(WINDOWS)
    page, made = render_report(joined, read_summaries(directory), psi_threshold=0.2)
    assert [f.key for f in made] == list(FIGURES) and page.count("<figure") == len(FIGURES)

    report = retrained(seen)
    assert report is not None
    runs = [r for r in seen if isinstance(r, RetrainReport)]
    assert runs[-1] == report and all(r.outcome == "skipped" for r in runs[:-1])  # cooldown
    assert report.trigger.startswith(("mae ", "psi ")), report
    assert report.outcome in ("promoted", "staged"), report.reason
    registry = Registry(settings.registry_dir)
    assert registry.aliases(MODEL_NAME)["staging"] == report.staged_version == "2"
    assert report.new_mae_s is not None and report.production_mae_s is not None
    promoted = report.new_mae_s < report.production_mae_s
    assert registry.aliases(MODEL_NAME)["production"] == ("2" if promoted else "1")

    again = build_service(settings, key_prefix=key_prefix + "mon:")
    try:
        newest = joined["delivered_at"].max()
        last_day = joined.filter(joined["delivered_at"] > newest - timedelta(days=1))  # type: ignore[operator]  # a datetime column's max() is a datetime
        assert again.restore(directory) == last_day.height  # a restart starts from the record
        assert again.stats.records == 0
    finally:
        again.close()


class FlakyJoin(MemoryJoin):
    """The join's rules, failing its first calls the way a Redis outage does."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures, self.calls = failures, 0

    def join(self, ops: Sequence[JoinOp]) -> JoinResult:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError("Redis is down")
        return super().join(ops)


def test_a_join_store_outage_rewinds_and_retries_without_losing_or_doubling_a_pair(
    settings: Settings, tmp_path: Path
) -> None:
    settings = settings.model_copy(update={"monitor_group": f"{settings.consumer_group}-m"})
    ensure_topics(settings)
    records = [r for r in scenario_records(True) if r.at_ms < SHOCK_MS - 20 * 3600_000][:3000]
    topics = {"predictions": settings.predictions_topic, "deliveries": settings.deliveries_topic}
    produce(settings, ((topics[r.topic], r.key, r.value) for r in records))
    predicted = {r.key for r in records if r.topic == "predictions"}
    delivered = {
        OrderDelivered.model_validate_json(r.value).order_id.encode()
        for r in records
        if r.topic == "deliveries"
    }
    join = FlakyJoin(failures=3)
    service = MonitorService(
        consumer_config(settings, group=settings.monitor_group),
        producer_config(settings),
        join,
        Monitor(MonitorConfig(), lambda _n, _v: None),
        IntakeConfig(settings.deliveries_topic, settings.predictions_topic),
        ServiceOptions(
            settings.deliveries_topic,
            settings.predictions_topic,
            settings.monitoring_topic,
            settings.dlq_topic,
            batch_max_events=500,
            publish_s=0.5,
            backoff_base_s=0.01,
        ),
    )
    with running(service):
        deadline = time.monotonic() + 60
        while service.stats.joined < len(predicted & delivered) and time.monotonic() < deadline:
            time.sleep(0.05)

    assert service.stats.retries == 3
    assert service.stats.joined == len(predicted & delivered)  # each pair once
    assert service.stats.duplicates == 0
    assert service.stats.records == len(records)  # every record, none read twice after it

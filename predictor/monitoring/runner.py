"""Build the monitor from ``Settings`` and run it: the one place its parts meet config.

``eta monitor`` joins an existing stack (like the stream worker): it needs
``ETA_KAFKA_BOOTSTRAP_SERVERS`` and ``ETA_REDIS_URL``. References come from the model
registry the first time a model version is seen; a version whose artifact cannot be read is
still watched for errors, and its drift is reported as unavailable.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from predictor.engines.errors import EngineConfigError
from predictor.models.registry import Registry
from predictor.monitoring.core import Monitor, MonitorConfig
from predictor.monitoring.drift import ModelReference, ReferenceLoader
from predictor.monitoring.intake import IntakeConfig
from predictor.monitoring.messages import RetrainReport
from predictor.monitoring.metrics import MonitorMetrics
from predictor.monitoring.recording import read_joined
from predictor.monitoring.redis_join import DEFAULT_PREFIX, RedisJoin
from predictor.monitoring.retrain import retrain_from_joined
from predictor.monitoring.service import MonitorService, Retrainer, ServiceOptions
from stream_features.errors import EtaError
from stream_features.kafka_clients import consumer_config, ensure_topics, producer_config
from stream_features.redis_client import REDIS_ERRORS, redis_client
from stream_features.settings import Settings

__all__ = [
    "build_service",
    "monitor_config",
    "record_dir",
    "registry_references",
    "retrain_once",
    "run_monitor",
]

log = logging.getLogger("etastream.monitor")
RETRY_ON: tuple[type[BaseException], ...] = (*REDIS_ERRORS, ConnectionError, TimeoutError)


def record_dir(settings: Settings) -> Path:
    """Where the monitor keeps joined pairs and its latest summaries."""
    return settings.data_dir / "monitor"


def monitor_config(settings: Settings) -> MonitorConfig:
    return MonitorConfig(
        mae_alert_s=settings.mae_alert_s,
        psi_alert=settings.psi_alert,
        missing_share_alert=settings.monitor_missing_share_alert,
        no_state_share_alert=settings.monitor_no_state_share_alert,
        freshness_alert_s=settings.monitor_freshness_alert_s,
        min_samples=settings.monitor_min_samples,
        coverage_target=settings.monitor_coverage_target,
        coverage_tolerance=settings.monitor_coverage_tolerance,
        coverage_min_samples=settings.monitor_coverage_min_samples,
        psi_min_entities=settings.monitor_psi_min_entities,
        psi_min_samples=settings.monitor_psi_min_samples,
        drift_settle_s=settings.monitor_drift_settle_s,
        error_window=settings.monitor_error_window,
        drift_window=settings.monitor_drift_window,
        psi_exempt=frozenset(settings.monitor_psi_exempt),
    )


def registry_references(registry: Registry) -> ReferenceLoader:
    """A loader of each version's reference from the registry, read once per version."""
    cache: dict[tuple[str, str], ModelReference | None] = {}

    def load(name: str, version: str) -> ModelReference | None:
        if (name, version) not in cache:
            try:
                cache[(name, version)] = ModelReference.from_metadata(
                    registry.load(name, version).metadata
                )
            except EtaError as exc:
                log.warning("no reference for %s:%s, drift not measured: %s", name, version, exc)
                cache[(name, version)] = None
        return cache[(name, version)]

    return load


def retrain_once(settings: Settings, registry: Registry, trigger: str) -> RetrainReport:
    """One retraining of ``settings.model_name`` on the recorded pairs of the last window."""
    frame = read_joined(record_dir(settings))
    if not frame.is_empty():
        newest = frame["delivered_at"].max()
        assert isinstance(newest, datetime)
        since = newest - timedelta(seconds=settings.monitor_retrain_window_s)
        frame = frame.filter(frame["delivered_at"] >= since)
    with tempfile.TemporaryDirectory(prefix="eta-retrain-") as tmp:
        outcome = retrain_from_joined(
            frame,
            registry,
            settings.model_name,
            work_dir=Path(tmp),
            production_stage=settings.serve_stage,
            min_rows=settings.monitor_retrain_min_rows,
            live_guard=settings.shadow_stage == "staging",  # retrained models land there
        )
    return RetrainReport(
        model_name=settings.model_name,
        trigger=trigger,
        outcome=outcome.outcome,
        reason=outcome.reason,
        rows=outcome.rows,
        staged_version=outcome.staged_version,
        production_version=outcome.production_version,
        holdout_rows=outcome.holdout_rows,
        new_mae_s=outcome.new_mae_s,
        production_mae_s=outcome.production_mae_s,
        at=datetime.now(UTC),
    )


def build_service(
    settings: Settings,
    *,
    retrain: bool | None = None,
    key_prefix: str = DEFAULT_PREFIX,
    metrics: MonitorMetrics | None = None,
) -> MonitorService:
    """A ready ``MonitorService`` for the settings (tests pass their own prefix and metrics)."""
    redis_url = settings.redis_url_value()
    if not settings.kafka_bootstrap_servers or redis_url is None:
        missing = "ETA_KAFKA_BOOTSTRAP_SERVERS" if redis_url else "ETA_REDIS_URL"
        raise EngineConfigError(
            f"{missing} is not set: the monitor joins an existing stack. Start one with "
            "`eta up` and export the ETA_* lines it prints, or point the variable at your own "
            "broker or Redis"
        )
    client = redis_client(redis_url, socket_timeout=10.0, socket_connect_timeout=2.0)
    registry = Registry(settings.registry_dir, client)
    retrainer: Retrainer | None = None
    if settings.monitor_retrain if retrain is None else retrain:

        def retrainer(trigger: str) -> RetrainReport:
            return retrain_once(settings, registry, trigger)

    given = settings.kafka_config()
    # Tansu answers a long poll at its end: a short one keeps the monitor close to live
    tuning: dict[str, Any] = {} if "fetch.wait.max.ms" in given else {"fetch.wait.max.ms": 100}
    return MonitorService(
        consumer_config(settings, group=settings.monitor_group, **tuning),
        producer_config(settings, writes=("monitoring", "dlq")),
        RedisJoin(client, settings.monitor_join_ttl_s, key_prefix),
        Monitor(monitor_config(settings), registry_references(registry)),
        IntakeConfig(
            deliveries_topic=settings.deliveries_topic,
            predictions_topic=settings.predictions_topic,
            shadow_topic=settings.shadow_topic,
            max_message_bytes=settings.max_message_bytes,
            max_future_skew_s=settings.max_future_skew_s,
        ),
        ServiceOptions(
            deliveries_topic=settings.deliveries_topic,
            predictions_topic=settings.predictions_topic,
            monitoring_topic=settings.monitoring_topic,
            dlq_topic=settings.dlq_topic,
            batch_max_events=max(settings.batch_max_events, 2000),
            publish_s=settings.monitor_publish_s,
            shadow_topic=settings.shadow_topic,
        ),
        metrics=metrics,
        record_dir=record_dir(settings),
        keep_rows=settings.monitor_keep_rows,
        retrainer=retrainer,
        retrain_cooldown_s=settings.monitor_retrain_cooldown_s,
        retry_on=RETRY_ON,
    )


def run_monitor(settings: Settings, stop: threading.Event, retrain: bool | None = None) -> int:
    """Run until ``stop``; the exit code: 0 when everything was acknowledged and committed,
    3 when the stop left something over (the last log line says what)."""
    ensure_topics(settings)
    metrics = MonitorMetrics()
    service = build_service(settings, retrain=retrain, metrics=metrics)
    metrics.serve(settings.monitor_metrics_port, settings.metrics_host)
    stats = service.run(stop)
    # 3, as the stream worker: stopped, but something read or produced was not acknowledged
    return 0 if stats.uncommitted_records == 0 and stats.unacknowledged == 0 else 3

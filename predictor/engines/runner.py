"""``eta predict stream``: wire settings to an engine, run until SIGTERM/SIGINT, exit cleanly.

The worker needs a broker and Redis that producers can also reach, so it starts no embedded
services: ``eta up`` does, and prints the ``ETA_*`` lines to export. It waits for a model at
``model_name@serve_stage`` before joining the group (nothing is consumed without a model to
score it), then follows the stage: a new version is picked up between batches.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Protocol

from predictor.engines.errors import EngineConfigError
from predictor.engines.wiring import confluent_worker, faust_worker, redis_features, shadow_stage
from predictor.serving.heap import STREAM_GEN0_THRESHOLD, freeze_startup_heap
from predictor.serving.latest import LatestPredictions
from predictor.serving.metrics import LoadFailures, StreamMetrics
from predictor.serving.store_faults import check_eviction_policy
from stream_features.kafka_clients import ensure_topics
from stream_features.redis_client import redis_client
from stream_features.settings import Settings

__all__ = ["WAITING_LOG_EVERY_S", "run_stream", "stop_on_signals", "wait_for_model"]

log = logging.getLogger("etastream.stream")
WAITING_LOG_EVERY_S = 30.0
"""How often the worker repeats that it is still waiting for a model (the first time at once)."""


class _Peekable(Protocol):
    def peek(self) -> object | None: ...


def _missing(variable: str) -> EngineConfigError:
    return EngineConfigError(
        f"{variable} is not set: the stream worker joins an existing stack. Start one with "
        "`eta up` and export the ETA_* lines it prints, or point the variable at your own "
        "broker or Redis"
    )


def stop_on_signals(stop: threading.Event, logger: logging.Logger = log) -> None:
    """SIGTERM/SIGINT ask for a clean stop (finish the batch, flush, commit); a second one
    interrupts whatever is waiting. ``logger``: the service's, which says it is stopping."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        logger.info("stopping on %s", signal.Signals(signum).name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)


def wait_for_model(
    handle: _Peekable,
    stop: threading.Event,
    ref: str,
    registry_dir: Path,
    *,
    poll_s: float = 1.0,
    every_s: float = WAITING_LOG_EVERY_S,
) -> bool:
    """Wait until ``handle`` has a model (True) or ``stop`` is set (False), saying once at the
    start what fixes it, then every ``every_s``.

    ``ref`` is ``name@stage``: the stage is what the command it names promotes.
    """
    stage = ref.rpartition("@")[2]
    last: float | None = None
    while handle.peek() is None:
        now = time.monotonic()
        if last is None:
            log.info(
                "waiting for a model at %s (registry %s): train and promote one with `eta train "
                "--training-set training_set.parquet --promote %s`, or point the stage at a "
                "registered version with `eta models promote VERSION --stage %s`; the worker "
                "joins the group once it is there",
                ref,
                registry_dir,
                stage,
                stage,
            )
            last = now
        elif now - last >= every_s:
            log.info(
                "still waiting for a model at %s (registry %s; `eta models list` shows it)",
                ref,
                registry_dir,
            )
            last = now
        if stop.wait(poll_s):
            return False
    return True


def run_stream(settings: Settings, engine: str, stop: threading.Event) -> int:
    """Run the chosen engine until ``stop``; the exit code (0 when everything was committed)."""
    from predictor.models.handle import ModelHandle

    if not settings.kafka_bootstrap_servers:
        raise _missing("ETA_KAFKA_BOOTSTRAP_SERVERS")
    redis_url = settings.redis_url_value()
    if redis_url is None:
        raise _missing("ETA_REDIS_URL")
    ensure_topics(settings)
    client = redis_client(redis_url, socket_timeout=5.0, socket_connect_timeout=2.0)
    check_eviction_policy(client, log)
    handle = ModelHandle.following(settings, client)
    try:
        ref = f"{settings.model_name}@{settings.serve_stage}"
        if not wait_for_model(handle, stop, ref, settings.registry_dir) or stop.is_set():
            return 0
        metrics = StreamMetrics()
        metrics.registry.register(LoadFailures(lambda: handle.load_failures))
        try:
            metrics.serve(settings.metrics_port, settings.metrics_host)
        except OSError as exc:  # e.g. a second worker on this machine: it still joins the group
            log.warning(
                "no metrics endpoint: port %s is not free (%s); set ETA_METRICS_PORT to another "
                "port, or 0 for none",
                settings.metrics_port,
                exc.strerror,
            )
        features = redis_features(settings, redis_url)
        latest = None
        if settings.prediction_ttl_s:
            latest = LatestPredictions(client, ttl_s=settings.prediction_ttl_s).store_result
        freeze_startup_heap(STREAM_GEN0_THRESHOLD)
        build = faust_worker if engine == "faust" else confluent_worker
        if settings.shadow_stage is None:
            stats = build(settings, features, handle.current, metrics, latest).run(stop)
            return 0 if stats.uncommitted_batches == 0 else 3
        # follows its stage as the primary does; none there yet: counted
        with ModelHandle.following(settings, client, settings.shadow_stage) as shadow_handle:
            shadow = shadow_stage(settings, shadow_handle, metrics)
            stats = build(settings, features, handle.current, metrics, latest, shadow).run(stop)
        return 0 if stats.uncommitted_batches == 0 else 3
    finally:
        handle.close()

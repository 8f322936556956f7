"""The Faust engine: the same core as a Faust agent over ``stream.take_events`` batches.

``take_events`` is ``take`` with the events instead of their values: the core needs each
record's topic, partition, offset and key for the dead letters. Faust acks a batch's events when
the agent asks for the next batch, and commits acked offsets every
``broker_commit_interval``; the agent awaits the broker's acknowledgement of every record it
produced before it asks, so an offset is committed only after its predictions are stored
(at-least-once). A batch that cannot be finished has its messages marked as settled without
acking them, so Faust never commits them and they are read again by whoever owns the partition
next: when stopping while Redis is down the worker just exits; on a failed delivery or any other
error it stops (crashes the app), since Faust would commit past such a gap at the head of a
partition once a later batch is acked. Redis being down is retried in place, with backoff.

Faust is optional: ``pip install etastream[faust]``. Kafka transactions are not offered here
(``exactly_once`` needs the confluent engine), nor are ``ETA_KAFKA__*`` librdkafka settings,
which aiokafka does not read.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

try:
    import faust
except ImportError as exc:  # pragma: no cover - the extra is installed in CI
    raise ImportError("pip install etastream[faust]") from exc

from predictor.engines.errors import EngineConfigError
from predictor.engines.options import EngineOptions, WorkerStats
from predictor.serving.backoff import backoff_s
from predictor.serving.metrics import StreamMetrics
from predictor.serving.pipeline import (
    BatchResult,
    PipelineConfig,
    ScoringModel,
    decode_batch,
    score_batch,
)
from predictor.serving.records import RawRecord
from predictor.serving.shadow_stage import ShadowStage
from stream_features.vectors import FeatureRows, FeatureSource

__all__ = ["FaustWorker"]

log = logging.getLogger("etastream.stream")


class FaustWorker:
    """One Faust app (one group member): ``run`` until ``stop`` is set, then stop cleanly."""

    def __init__(
        self,
        bootstrap: str,
        group: str,
        features: FeatureSource,
        models: Callable[[], ScoringModel],
        config: PipelineConfig,
        options: EngineOptions,
        metrics: StreamMetrics | None = None,
        retry_on: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError),
        session_timeout_s: float = 6.0,
        after_scored: Callable[[BatchResult], None] | None = None,
        compression: str = "none",
        shadow: ShadowStage | None = None,
    ) -> None:
        self._after_scored = after_scored
        self._shadow = shadow
        self._compression = None if compression == "none" else compression  # aiokafka's None
        if options.exactly_once:
            raise EngineConfigError("exactly_once needs the confluent engine (transactions)")
        self._bootstrap, self._group = bootstrap, group
        self._features, self._models, self._config = features, models, config
        self._o = options
        self._metrics = metrics or StreamMetrics()
        self._retry_on = retry_on
        self._session_timeout_s = session_timeout_s
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="eta-core")
        self.stats = WorkerStats()
        self.assigned = threading.Event()

    def run(self, stop: threading.Event) -> WorkerStats:
        """Start the app on an event loop of its own, stop it when ``stop`` is set."""
        try:
            # Faust makes ``<app id>-data`` in the working directory unless told otherwise, even
            # with the memory store; the worker keeps no state there, so it is thrown away.
            with tempfile.TemporaryDirectory(prefix="eta-faust-") as datadir:
                asyncio.run(self._main(stop, datadir))
        finally:
            self._executor.shutdown(wait=True)
            if self._shadow is not None:  # what it has queued, then its producer flushed
                self._shadow.close(self._o.shutdown_timeout_s)
            log.info("stream worker stopped", extra=vars(self.stats))
        return self.stats

    async def _main(self, stop: threading.Event, datadir: str) -> None:
        app = self._build_app(stop, datadir)
        await app.start()
        try:
            while not stop.is_set() and not app.should_stop:
                await asyncio.sleep(0.05)
        finally:
            await app.stop()
        if app.crash_reason is not None:
            raise app.crash_reason

    def _build_app(self, stop: threading.Event, datadir: str) -> faust.App:
        o = self._o
        app = faust.App(
            self._group,  # the app id is the consumer group
            datadir=datadir,
            broker=";".join(f"kafka://{h}" for h in self._bootstrap.split(",")),
            autodiscover=False,
            web_enabled=False,
            store="memory://",
            topic_allow_declare=False,  # the topics exist (ensure_topics), with their configs
            topic_disable_leader=True,
            consumer_auto_offset_reset="earliest",
            consumer_max_fetch_size=10_485_760,
            broker_session_timeout=self._session_timeout_s,
            broker_heartbeat_interval=max(self._session_timeout_s / 6, 0.1),
            broker_commit_interval=o.commit_interval_ms / 1e3,
            broker_max_poll_records=o.batch_max_events,
            producer_acks=-1,
            producer_max_request_size=10_485_760,
            producer_linger=0.005,
            producer_compression_type=self._compression,
            stream_buffer_maxsize=max(o.batch_max_events * 4, 4096),
        )
        app.sensors.add(_CommitCounter(self.stats))
        source = app.topic(
            *o.source_topics, key_serializer="raw", value_serializer="raw", allow_empty=True
        )

        async def predict(stream: Any) -> None:
            within = max(o.batch_max_wait_ms, 1) / 1e3
            async for events in stream.take_events(o.batch_max_events, within=within):
                finished = False
                try:
                    await self._handle(app, events, stop)
                    finished = True
                except _Abandoned:
                    self.stats.uncommitted_batches += 1
                except Exception as exc:
                    _settle_unacked(events)
                    # stop everything: a restarted agent acking later batches could let Faust
                    # commit past this one (it skips a gap where nothing was committed yet)
                    log.error("batch failed; stopping the worker: %r", exc)
                    await app.crash(exc)
                    raise
                finally:
                    if not finished:
                        _settle_unacked(events)

        app.agent(source, name=f"{self._group}-predict")(predict)

        def on_assigned(_app: Any, *args: Any, signal: Any, **_kw: Any) -> None:
            assigned = args[0] if args else set()
            log.info("partitions assigned", extra={"partitions": sorted(map(_tp, assigned))})
            if assigned:
                self.assigned.set()

        def on_revoked(_app: Any, *args: Any, signal: Any, **_kw: Any) -> None:
            revoked = args[0] if args else set()
            log.info("partitions revoked", extra={"partitions": sorted(map(_tp, revoked))})
            self.assigned.clear()

        async def report_lag() -> None:
            consumer = app.consumer
            for tp in consumer.assignment():
                position = await consumer.position(tp)
                high = consumer.highwater(tp)
                if position is not None and position >= 0 and high is not None and high >= 0:
                    self._metrics.lag.labels(tp.topic, str(tp.partition)).set(high - position)

        app.timer(o.lag_interval_s, name=f"{self._group}-lag")(report_lag)
        # mode's stubs describe receivers more narrowly than it calls them
        app.on_partitions_assigned.connect(on_assigned)  # type: ignore[arg-type]  # as above
        app.on_partitions_revoked.connect(on_revoked)  # type: ignore[arg-type]  # as above

        return app

    async def _handle(self, app: faust.App, events: Sequence[Any], stop: threading.Event) -> None:
        records = [
            RawRecord(m.value, m.topic, m.partition, m.offset, m.key)
            for m in (e.message for e in events)
        ]
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            model = self._models()
            started = time.perf_counter()
            try:
                rows, result = await loop.run_in_executor(
                    self._executor, self._process, records, model
                )
                break
            except self._retry_on as exc:
                if stop.is_set():
                    log.warning("stopping with a batch the feature store never took")
                    raise _Abandoned from exc
                delay = backoff_s(attempt, self._o.backoff_base_s, self._o.backoff_cap_s)
                log.warning(
                    "feature store unavailable; retrying the batch",
                    extra={"error": repr(exc), "attempt": attempt, "retry_in_s": delay},
                )
                self._metrics.retries.labels("features").inc()
                attempt += 1
                await asyncio.sleep(delay)
        self._metrics.observe_batch(result, time.perf_counter() - started)
        futures = [
            await app.producer.send(self._o.predictions_topic, out.key, out.value, None, None, None)
            for out in result.predictions
        ] + [
            await app.producer.send(self._o.dlq_topic, out.key, out.value, None, None, None)
            for out in result.dead_letters
        ]
        await asyncio.gather(*futures)  # raises on a failed delivery: the batch is not acked
        self._metrics.observe_acked(result.created_ms, time.time_ns() // 1_000_000)
        if self._shadow is not None:  # queued for its own thread, once the primary is out
            self._shadow(rows, result)
        self.stats.batches += 1
        self.stats.records += len(records)
        self.stats.predictions += len(result.predictions)
        self.stats.dead_letters += len(result.dead_letters)

    def _process(
        self, records: Sequence[RawRecord], model: ScoringModel
    ) -> tuple[FeatureRows | None, BatchResult]:
        """``process_batch``'s three steps, keeping the rows for the shadow."""
        now_ms = time.time_ns() // 1_000_000
        decoded = decode_batch(records, now_ms=now_ms, config=self._config)
        rows = self._features.update_and_read(decoded.events) if decoded.events else None
        result = score_batch(decoded, rows, model, now_ms=now_ms, config=self._config)
        if self._after_scored is not None and result.predictions:
            self._after_scored(result)
        return rows, result


def _settle_unacked(events: Sequence[Any]) -> None:
    """Mark messages settled without acking them: Faust never commits them; read again."""
    for event in events:
        event.message.acked = True


class _CommitCounter(faust.Sensor):
    """Counts Faust's offset commits into the worker's stats."""

    def __init__(self, stats: WorkerStats) -> None:
        super().__init__()
        self._stats = stats

    def on_commit_completed(self, consumer: Any, state: Any) -> None:
        self._stats.commits += 1


class _Abandoned(Exception):
    """A batch left unfinished on purpose (stopping while Redis is down)."""


def _tp(tp: Any) -> str:
    return f"{tp.topic}[{tp.partition}]"

"""The default engine: confluent-kafka in, the core, confluent-kafka out, offsets after acks.

One consumer (one member of the group) reads the orders, dasher-events and deliveries topics in
micro-batches cut by size and time. Each batch goes through ``process_batch``; its predictions
and dead letters are produced without waiting, and its offsets are committed once the broker
has acknowledged every one of its records and every batch before it (``CommitTracker``). A
failed delivery rewinds to the first uncommitted offset; a feature-store outage (Redis down)
rewinds the batch and retries it with capped exponential backoff. Nothing is committed that was
not acknowledged, so a crash anywhere means records are read again, never lost
(at-least-once). With ``exactly_once`` each batch is one Kafka transaction instead.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from predictor.engines.options import EngineOptions, WorkerStats
from predictor.serving.backoff import backoff_s
from predictor.serving.commits import CommitTracker, TopicPartitionKey, offset_span
from predictor.serving.metrics import StreamMetrics
from predictor.serving.pipeline import BatchResult, PipelineConfig, ScoringModel, process_batch
from predictor.serving.records import OutRecord
from stream_features.vectors import FeatureSource

__all__ = ["ConfluentWorker", "WorkerStats"]

log = logging.getLogger("etastream.stream")


class ConfluentWorker:
    """One group member: ``run`` until ``stop`` is set, then finish, flush, commit and leave."""

    def __init__(
        self,
        consumer_config: dict[str, Any],
        producer_config: dict[str, Any],
        features: FeatureSource,
        models: Callable[[], ScoringModel],
        config: PipelineConfig,
        options: EngineOptions,
        metrics: StreamMetrics | None = None,
        retry_on: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError),
    ) -> None:
        self._o = options
        self._features, self._models, self._config = features, models, config
        self._metrics = metrics or StreamMetrics()
        self._retry_on = retry_on
        self._consumer = Consumer({**consumer_config, "on_commit": self._on_commit})
        if options.exactly_once:
            producer_config = {
                **producer_config,
                "transactional.id": f"{consumer_config['group.id']}-{time.time_ns():x}",
            }
        self._producer = Producer(producer_config)
        self._tracker = CommitTracker()
        self._to_commit: dict[TopicPartitionKey, int] = {}
        self._last_commit = 0.0
        self._last_lag = time.monotonic()
        self._attempt = 0
        self.stats = WorkerStats()
        self.assigned = threading.Event()

    # --- the loop ----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> WorkerStats:
        if self._o.exactly_once:
            self._producer.init_transactions(30)
        self._consumer.subscribe(
            self._o.source_topics,
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        try:
            while not stop.is_set():
                self.step(stop)
        finally:
            self._close()
        return self.stats

    def step(self, stop: threading.Event) -> None:
        """Consume one batch (size- and time-bounded), process it, settle acknowledgements."""
        messages = self._consumer.consume(self._o.batch_max_events, self._o.batch_max_wait_ms / 1e3)
        records = [m for m in messages if self._usable(m)]
        if records:
            self._handle(records, stop)
        self._producer.poll(0)
        self._settle()
        if time.monotonic() - self._last_lag >= self._o.lag_interval_s:
            self._report_lag()

    def _usable(self, message: Message) -> bool:
        err = message.error()
        if err is None:
            return True
        if err.fatal():
            raise KafkaException(err)
        if err.code() != KafkaError._PARTITION_EOF:
            log.warning("consumer error: %s", err, extra={"kafka_error": err.name()})
        return False

    def _handle(self, records: Sequence[Message], stop: threading.Event) -> None:
        model = self._models()
        started = time.perf_counter()
        try:
            result = process_batch(
                records,
                self._features,
                model,
                now_ms=time.time_ns() // 1_000_000,
                config=self._config,
            )
        except self._retry_on as exc:
            delay = backoff_s(self._attempt, self._o.backoff_base_s, self._o.backoff_cap_s)
            log.warning(
                "feature store unavailable; batch will be read again",
                extra={"error": repr(exc), "attempt": self._attempt, "retry_in_s": delay},
            )
            self._metrics.retries.labels("features").inc()
            self._seek(offset_span(_positions(records))[0])
            self._attempt += 1
            self._wait(delay, stop)
            return
        if self._attempt:
            log.info("feature store is back", extra={"attempts": self._attempt})
            self._attempt = 0
        self._metrics.observe_batch(result, time.perf_counter() - started)
        self.stats.batches += 1
        self.stats.records += len(records)
        self.stats.predictions += len(result.predictions)
        self.stats.dead_letters += len(result.dead_letters)
        if self._o.exactly_once:
            self._transact(records, result)
        else:
            self._produce(records, result)

    # --- at-least-once: produce now, commit when acknowledged ---------------------------------

    def _produce(self, records: Sequence[Message], result: BatchResult) -> None:
        first, nxt = offset_span(_positions(records))
        batch = self._tracker.open(
            first, nxt, len(result.predictions) + len(result.dead_letters), result.created_ms
        )
        self._send_all(result, batch.on_delivery)
        while len(self._tracker) > self._o.max_inflight_batches:
            self._producer.poll(0.005)
            self._settle()

    def _send_all(
        self, result: BatchResult, on_delivery: Callable[[Any, Any], None] | None
    ) -> None:
        for out in result.predictions:
            self._send(self._o.predictions_topic, out, on_delivery)
        for out in result.dead_letters:
            self._send(self._o.dlq_topic, out, on_delivery)

    def _send(
        self, topic: str, out: OutRecord, on_delivery: Callable[[Any, Any], None] | None
    ) -> None:
        while True:
            try:
                self._producer.produce(topic, out.value, out.key, on_delivery=on_delivery)
                return
            except BufferError:  # the local queue is full: let deliveries drain it
                self._producer.poll(0.05)

    def _settle(self, sync: bool = False) -> None:
        """Commit what is acknowledged; after a failed delivery, rewind to what is not."""
        for batch in self._tracker.take_complete():
            for tp, offset in batch.next.items():
                self._to_commit[tp] = max(offset, self._to_commit.get(tp, offset))
            if batch.acked_wall_ms is not None:
                self._metrics.observe_acked(batch.created_ms, batch.acked_wall_ms)
        errors = self._tracker.failed
        if errors:
            self._producer.flush(self._o.shutdown_timeout_s)
            self._settle_complete_only()
            self._commit(sync=True)
            rewind = self._tracker.rewind()
            log.error(
                "delivery failed; rewinding to the first unacknowledged batch",
                extra={"errors": errors[:5], "partitions": len(rewind)},
            )
            self._metrics.retries.labels("delivery").inc()
            self.stats.rewinds += 1
            self._seek(rewind)
            return
        now = time.monotonic()
        if sync or now - self._last_commit >= self._o.commit_interval_ms / 1e3:
            self._commit(sync=sync)

    def _settle_complete_only(self) -> None:
        for batch in self._tracker.take_complete():
            for tp, offset in batch.next.items():
                self._to_commit[tp] = max(offset, self._to_commit.get(tp, offset))

    def _commit(self, sync: bool) -> None:
        if not self._to_commit:
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in self._to_commit.items()]
        self._to_commit = {}
        self._last_commit = time.monotonic()
        try:
            if sync:
                self._consumer.commit(offsets=offsets, asynchronous=False)
            else:
                self._consumer.commit(offsets=offsets, asynchronous=True)
            self.stats.commits += 1
            self._metrics.commits.inc()
        except KafkaException as exc:  # e.g. a rebalance under way: the next owner reads again
            log.warning("commit failed: %s", exc, extra={"partitions": len(offsets)})

    def _on_commit(self, err: Any, partitions: list[TopicPartition]) -> None:
        if err is not None and err.code() != KafkaError._NO_OFFSET:
            log.warning("commit failed: %s", err, extra={"partitions": len(partitions)})

    # --- exactly-once: one transaction per batch ----------------------------------------------

    def _transact(self, records: Sequence[Message], result: BatchResult) -> None:
        first, nxt = offset_span(_positions(records))
        offsets = [TopicPartition(t, p, o) for (t, p), o in nxt.items()]
        producer = self._producer
        try:
            producer.begin_transaction()
            self._send_all(result, None)  # a failed record fails commit_transaction
            producer.send_offsets_to_transaction(
                offsets, self._consumer.consumer_group_metadata(), self._o.shutdown_timeout_s
            )
            producer.commit_transaction(self._o.shutdown_timeout_s)
        except KafkaException as exc:
            err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            if err is None or err.fatal() or not (err.txn_requires_abort() or err.retriable()):
                raise
            log.warning("transaction aborted; batch will be read again", extra={"error": str(exc)})
            producer.abort_transaction(self._o.shutdown_timeout_s)
            self._metrics.retries.labels("transaction").inc()
            self.stats.rewinds += 1
            self._seek(first)
            return
        self.stats.commits += 1
        self._metrics.commits.inc()
        self._metrics.observe_acked(result.created_ms, time.time_ns() // 1_000_000)

    # --- rebalance and shutdown ----------------------------------------------------------------

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("partitions assigned", extra={"partitions": [_tp(p) for p in partitions]})
        self.assigned.set()

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Finish what is in flight and commit it before the partitions go."""
        rewind = self._finish()
        revoked = {(p.topic, p.partition) for p in partitions}
        # with cooperative assignment some partitions stay: read their failed records again
        self._seek({tp: off for tp, off in rewind.items() if tp not in revoked})
        log.info("partitions revoked", extra={"partitions": [_tp(p) for p in partitions]})
        self.assigned.clear()

    def _on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        dropped = sum(b.pending for b in self._tracker)
        self._tracker.rewind()
        self._to_commit.clear()
        log.warning(
            "partitions lost; their uncommitted records will be read again by the next owner",
            extra={"partitions": [_tp(p) for p in partitions], "unacknowledged": dropped},
        )
        self.assigned.clear()

    def _finish(self) -> dict[TopicPartitionKey, int]:
        """Flush, commit every acknowledged batch synchronously, and say where the rest start."""
        self._producer.flush(self._o.shutdown_timeout_s)
        self._settle_complete_only()
        self._commit(sync=True)
        left = sum(1 for _ in self._tracker)
        if left:
            self.stats.uncommitted_batches += left
            log.warning(
                "batches not acknowledged are left uncommitted; they will be read again",
                extra={"batches": left, "errors": self._tracker.failed[:5]},
            )
        return self._tracker.rewind()

    def _close(self) -> None:
        try:
            self._finish()
        finally:
            self._consumer.close()  # leaves the group now instead of after session.timeout.ms
            log.info("stream worker stopped", extra=vars(self.stats))

    # --- helpers -------------------------------------------------------------------------------

    def _seek(self, positions: dict[TopicPartitionKey, int]) -> None:
        for (topic, partition), offset in positions.items():
            self._consumer.seek(TopicPartition(topic, partition, offset))

    def _wait(self, seconds: float, stop: threading.Event) -> None:
        """Sleep for a backoff while still serving acknowledgements and commits."""
        deadline = time.monotonic() + seconds
        while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
            self._producer.poll(min(left, 0.05))
            self._settle()

    def _report_lag(self) -> None:
        self._last_lag = time.monotonic()
        try:
            for tp in self._consumer.position(self._consumer.assignment()):
                _low, high = self._consumer.get_watermark_offsets(tp, cached=True)
                if tp.offset >= 0 and high >= 0:
                    self._metrics.lag.labels(tp.topic, str(tp.partition)).set(high - tp.offset)
        except KafkaException as exc:
            log.debug("lag not available: %s", exc)


def _positions(records: Sequence[Message]) -> list[tuple[str, int, int]]:
    return [(m.topic() or "", m.partition() or 0, m.offset() or 0) for m in records]


def _tp(tp: TopicPartition) -> str:
    return f"{tp.topic}[{tp.partition}]"

"""The default engine: confluent-kafka in, the core, confluent-kafka out, offsets after acks.

One consumer (one member of the group) reads the orders, dasher-events and deliveries topics in
micro-batches cut by size and time. Each batch is decoded, applied to the feature state of its
partitions (in this process, written behind to Redis before the batch goes on), scored and
encoded by the core (``decode_batch``, ``score_batch``). Predictions and dead letters are
produced without waiting, and a batch's offsets are committed once the broker has acknowledged
every one of its records and every batch before it (``CommitTracker``). A failed delivery
rewinds to the first uncommitted offset; a feature-store outage (Redis down) rewinds the batches
not yet scored and retries with capped exponential backoff. Nothing is committed that was not
acknowledged, so a crash anywhere means records are read again, never lost (at-least-once). With
``exactly_once`` each batch is one Kafka transaction instead (``transactions``). Records that
run ahead of the other partitions in event time wait, and their partitions are paused, until the
others catch up (``alignment``), so a backlog is applied in event-time order.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from predictor.engines.alignment import Aligner, Moves
from predictor.engines.options import EngineOptions, WorkerStats
from predictor.engines.transactions import produce_in_transaction
from predictor.serving.backoff import backoff_s
from predictor.serving.broker_watch import BrokerWatch
from predictor.serving.commits import CommitTracker, TopicPartitionKey, offset_span
from predictor.serving.metrics import StreamMetrics
from predictor.serving.pipeline import (
    BatchResult,
    DecodedBatch,
    PipelineConfig,
    ScoringModel,
    decode_batch,
    score_batch,
)
from predictor.serving.shadow_stage import ShadowStage
from predictor.serving.store_faults import describe_cause, feature_store_cause
from stream_features.produce import produce_all
from stream_features.vectors import (
    FeatureRows,
    FeatureSource,
    PartitionedFeatureSource,
)

__all__ = ["ConfluentWorker", "WorkerStats"]

log = logging.getLogger("etastream.stream")


@dataclass
class _Batch:
    """A consumed batch between decoding and scoring. ``reply`` holds the feature update's
    outcome: the rows, and the write-behind still in flight (None when the source writes
    before it returns), which must land before anything the rows led to is produced."""

    records: Sequence[Message]
    decoded: DecodedBatch
    reply: Future[tuple[FeatureRows | None, Future[None] | None]]
    started: float


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
        after_scored: Callable[[BatchResult], None] | None = None,
        shadow: ShadowStage | None = None,
    ) -> None:
        self._o = options
        self._after_scored = after_scored
        self._shadow = shadow
        self._features, self._models, self._config = features, models, config
        self._metrics = metrics or StreamMetrics()
        self._retry_on = retry_on
        self._align: Aligner[Message] | None = None
        if options.align_margin_s > 0:
            self._align = Aligner(
                options.align_margin_s * 1000, options.align_idle_ms / 1e3, options.batch_max_events
            )
            # a resumed partition is fetched at once, not after librdkafka's 1 s backoff for a
            # full queue (measured: a 200k backlog drained at 15k events/s with it, 30k without)
            consumer_config = {"fetch.queue.backoff.ms": 20, **consumer_config}
        # librdkafka's statistics each second: how the worker notices a hung broker
        self._broker = BrokerWatch(options.stall_after_s)
        consumer_config = {"statistics.interval.ms": 1000, **consumer_config}
        producer_config = {"statistics.interval.ms": 1000, **producer_config}
        self._consumer = Consumer(
            {
                **consumer_config,
                "on_commit": self._on_commit,
                "stats_cb": lambda text: self._on_stats("consumer", text),
            }
        )
        if options.exactly_once:
            producer_config = {
                **producer_config,
                "transactional.id": f"{consumer_config['group.id']}-{time.time_ns():x}",
            }
        self._producer = Producer(
            {**producer_config, "stats_cb": lambda text: self._on_stats("producer", text)}
        )
        # one thread: feature round trips run one at a time, in batch order
        self._store = ThreadPoolExecutor(1, thread_name_prefix="eta-features")
        self._batches: deque[_Batch] = deque()
        self._tracker = CommitTracker()
        self._to_commit: dict[TopicPartitionKey, int] = {}
        self._last_commit = 0.0
        self._last_lag = time.monotonic()
        self._attempt = 0
        self.stats = WorkerStats()
        self.assigned = threading.Event()

    # --- the loop ----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> WorkerStats:
        """``open``, ``step`` until ``stop`` is set, ``close``."""
        self.open()
        try:
            while not stop.is_set():
                self.step(stop)
        finally:
            self.close()
        return self.stats

    def open(self) -> None:
        """Join the group (the assignment arrives during the following steps)."""
        if self._o.exactly_once:
            self._producer.init_transactions(30)
        self._consumer.subscribe(
            self._o.source_topics,
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )

    def step(self, stop: threading.Event) -> None:
        """Consume one batch (size- and time-bounded), process it, settle acknowledgements.

        A full batch (a backlog) stays in flight while the next is consumed and decoded; a
        partial one (live traffic) is finished at once, so it waits for nothing more.
        """
        messages = self._consumer.consume(self._o.batch_max_events, self._o.batch_max_wait_ms / 1e3)
        records = [m for m in messages if self._usable(m)]
        if self._align is not None:
            records = self._aligned(records)
        if records:
            self._batches.append(self._start(records))
        overlap = len(records) >= self._o.batch_max_events and not self._o.exactly_once
        while len(self._batches) > int(overlap):
            if not self._finish_oldest():
                self._wait(self._next_backoff(), stop)
                break
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

    def _aligned(self, records: list[Message]) -> list[Message]:
        """What may be processed now in event-time order; the rest waits, its partitions paused."""
        assert self._align is not None
        now = time.monotonic()
        released = self._align.admit(records, now, time.time() * 1000)
        self._move(self._align.moves(now))
        return released

    def _move(self, moves: Moves) -> None:
        try:
            if moves.pause:
                self._consumer.pause([TopicPartition(t, p) for t, p in moves.pause])
            if moves.resume:
                self._consumer.resume([TopicPartition(t, p) for t, p in moves.resume])
        except KafkaException as exc:  # e.g. a partition revoked meanwhile
            log.warning("pause or resume failed: %s", exc)
        if self._align is not None:
            self._metrics.paused.set(self._align.paused)

    def _start(self, records: Sequence[Message]) -> _Batch:
        started = time.perf_counter()
        decoded = decode_batch(records, now_ms=time.time_ns() // 1_000_000, config=self._config)
        return _Batch(records, decoded, _run_now(self._feature_call(decoded)), started)

    def _feature_call(
        self, decoded: DecodedBatch
    ) -> Callable[[], tuple[FeatureRows | None, Future[None] | None]]:
        """The batch's feature update, run at once.

        A partitioned source is told each event's partition: it applies the batch to the
        state of the partitions this worker owns and starts writing the changes behind; the
        batch is scored while that round trip runs and produced only once it has landed
        (``_finish_oldest``), so nothing is produced (and so committed) ahead of Redis.
        """
        source, events = self._features, decoded.events
        if not events:
            return lambda: (None, None)
        if isinstance(source, PartitionedFeatureSource):
            return lambda: source.start_update(events, decoded.partitions)
        return lambda: (source.update_and_read(events), None)

    def _finish_oldest(self, revoked: frozenset[TopicPartitionKey] = frozenset()) -> bool:
        """Score and produce the oldest batch; False (and everything rewound) when the
        feature store failed it, in the update or in its write-behind."""
        batch = self._batches[0]
        try:
            rows, written = batch.reply.result()
        except self._retry_on as exc:
            self._rewind_unscored(exc, revoked)
            return False
        try:
            result = self._score(batch, rows)
        except BaseException:
            self._drop_unscored()  # nothing after a failed batch may be produced or committed
            raise
        try:
            if written is not None:
                written.result()
        except self._retry_on as exc:
            self._rewind_unscored(exc, revoked)
            return False
        self._batches.popleft()
        if self._attempt:
            log.info("feature store is back", extra={"attempts": self._attempt})
            self._attempt = 0
        try:
            self._produce_result(batch, result)
        except BaseException:
            self._drop_unscored()
            raise
        if self._shadow is not None:  # queued for its own thread, once the primary is out
            self._shadow(rows, result)
        return True

    def _score(self, batch: _Batch, rows: FeatureRows | None) -> BatchResult:
        return score_batch(
            batch.decoded,
            rows,
            self._models(),
            now_ms=time.time_ns() // 1_000_000,
            config=self._config,
        )

    def _produce_result(self, batch: _Batch, result: BatchResult) -> None:
        self._metrics.observe_batch(result, time.perf_counter() - batch.started)
        if self._after_scored is not None and result.predictions:
            self._store.submit(self._after_scored, result)  # after this batch's round trip
        self.stats.batches += 1
        self.stats.records += len(batch.records)
        self.stats.predictions += len(result.predictions)
        self.stats.dead_letters += len(result.dead_letters)
        if self._o.exactly_once:
            self._transact(batch.records, result)
        else:
            self._produce(batch.records, result)

    def _rewind_unscored(self, exc: BaseException, revoked: frozenset[TopicPartitionKey]) -> None:
        """Read every batch not yet scored again, from its first offsets."""
        first = self._drop_unscored()
        cause = feature_store_cause(exc)
        log.warning(
            "feature store unavailable (%s); the batch will be read again",
            describe_cause(cause),
            extra={"error": repr(exc), "cause": cause, "attempt": self._attempt},
        )
        self._metrics.retries.labels("features").inc()
        self._metrics.store_errors.labels(cause).inc()
        self._seek({tp: off for tp, off in first.items() if tp not in revoked})

    def _drop_unscored(self) -> dict[TopicPartitionKey, int]:
        """Forget the batches not yet scored; the first offset of each of their partitions."""
        first: dict[TopicPartitionKey, int] = {}
        for batch in self._batches:
            if batch.reply.exception() is None:  # wait for its write: memory and Redis settle
                _rows, written = batch.reply.result()
                if written is not None:
                    wait([written])
            for tp, offset in offset_span(_positions(batch.records))[0].items():
                first[tp] = min(offset, first.get(tp, offset))
        self._batches.clear()
        return first

    def _next_backoff(self) -> float:
        delay = backoff_s(self._attempt, self._o.backoff_base_s, self._o.backoff_cap_s)
        self._attempt += 1
        return delay

    # --- at-least-once: produce now, commit when acknowledged ---------------------------------

    def _produce(self, records: Sequence[Message], result: BatchResult) -> None:
        first, nxt = offset_span(_positions(records))
        batch = self._tracker.open(
            first, nxt, len(result.predictions) + len(result.dead_letters), result.created_ms
        )
        for topic, outs in (
            (self._o.predictions_topic, result.predictions),
            (self._o.dlq_topic, result.dead_letters),
        ):
            pairs = [(out.key, out.value) for out in outs]
            produce_all(self._producer, topic, pairs, batch.on_delivery)
        while len(self._tracker) > self._o.max_inflight_batches:
            self._producer.poll(0.005)
            self._settle()

    def _settle(self, sync: bool = False) -> None:
        """Commit what is acknowledged; after a failed delivery, rewind to what is not."""
        self._take_complete()
        errors = self._tracker.failed
        if errors:
            self._producer.flush(self._o.shutdown_timeout_s)
            self._take_complete()
            self._commit(sync=True)
            rewind = self._tracker.rewind()
            for tp, offset in self._drop_unscored().items():  # they follow the failed batch
                rewind[tp] = min(offset, rewind.get(tp, offset))
            log.error(
                "delivery failed; rewinding to the first unacknowledged batch",
                extra={"errors": errors[:5], "partitions": len(rewind)},
            )
            self._metrics.retries.labels("delivery").inc()
            self.stats.rewinds += 1
            self._seek(rewind)
            return
        if sync or time.monotonic() - self._last_commit >= self._o.commit_interval_ms / 1e3:
            self._commit(sync=sync)

    def _take_complete(self) -> None:
        for batch in self._tracker.take_complete():
            for tp, offset in batch.next.items():
                self._to_commit[tp] = max(offset, self._to_commit.get(tp, offset))
            if batch.acked_wall_ms is not None:
                self._metrics.observe_acked(batch.created_ms, batch.acked_wall_ms)

    def _on_stats(self, client: str, text: str) -> None:
        """Say once when the broker goes silent (a hung broker closes nothing, so no error
        comes; ``broker_watch``), and once when it answers again; batches wait, uncommitted."""
        change = self._broker.observe(client, orjson.loads(text))
        if change == "stalled":
            self._metrics.stalled.set(1)
            log.warning(
                "the broker has answered nothing for %.0f s; the worker waits for it, "
                "committing nothing it has not acknowledged",
                self._o.stall_after_s,
                extra={"unacknowledged": self._tracker.pending, "batches": len(self._tracker)},
            )
        elif change == "answering":
            self._metrics.stalled.set(0)
            log.info("the broker answers again", extra={"silent_s": round(self._broker.longest_s)})

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

    def _transact(self, records: Sequence[Message], result: BatchResult) -> None:
        first, nxt = offset_span(_positions(records))
        committed = produce_in_transaction(
            self._producer,
            self._consumer,
            result,
            nxt,
            self._o.predictions_topic,
            self._o.dlq_topic,
            self._o.shutdown_timeout_s,
        )
        if not committed:
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
        if self._align is not None:  # librdkafka keeps a pause across revoke and reassignment
            self._align.assign([(p.topic, p.partition) for p in partitions], time.monotonic())
            self._move(Moves(resume=[(p.topic, p.partition) for p in partitions]))
        self.assigned.set()

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Finish what is in flight and commit it before the partitions go."""
        revoked = frozenset((p.topic, p.partition) for p in partitions)
        rewind = self._finish(revoked)
        # with cooperative assignment some partitions stay: read their failed records again
        self._seek({tp: off for tp, off in rewind.items() if tp not in revoked})
        if self._align is not None:  # what they hold was not committed: the next owner reads it
            self._align.forget(revoked)
        self._release_state(partitions)
        log.info("partitions revoked", extra={"partitions": [_tp(p) for p in partitions]})
        self.assigned.clear()

    def _on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._drop_unscored()
        dropped = sum(b.pending for b in self._tracker)
        self._tracker.rewind()
        self._to_commit.clear()
        if self._align is not None:
            self._align.forget((p.topic, p.partition) for p in partitions)
        self._release_state(partitions)
        log.warning(
            "partitions lost; their uncommitted records will be read again by the next owner",
            extra={"partitions": [_tp(p) for p in partitions], "unacknowledged": dropped},
        )
        self.assigned.clear()

    def _finish(self, revoked: frozenset[TopicPartitionKey]) -> dict[TopicPartitionKey, int]:
        """Score what is decoded, flush, commit every acknowledged batch synchronously, and
        say where the rest start."""
        while self._batches:
            if not self._finish_oldest(revoked):  # the store is down: those are read again
                self.stats.uncommitted_batches += 1
        self._producer.flush(self._o.shutdown_timeout_s)
        self._take_complete()
        self._commit(sync=True)
        left = len(self._tracker)
        if left:
            self.stats.uncommitted_batches += left
            log.warning(
                "batches not acknowledged are left uncommitted; they will be read again",
                extra={"batches": left, "errors": self._tracker.failed[:5]},
            )
        return self._tracker.rewind()

    def close(self) -> None:
        """Finish what is in flight, flush, commit, leave the group."""
        try:
            everything = frozenset((p.topic, p.partition) for p in self._consumer.assignment())
            self._finish(everything)
        finally:
            self._consumer.close()  # leaves the group now instead of after session.timeout.ms
            self._store.shutdown(wait=True)
            if self._shadow is not None:
                self._shadow.close(self._o.shutdown_timeout_s)
            log.info("stream worker stopped", extra=vars(self.stats))

    def _release_state(self, partitions: list[TopicPartition]) -> None:
        """A partition's feature state leaves memory with its last source topic partition.

        Orders, deliveries and dasher events of partition ``p`` share one state (the topics
        are co-partitioned and the range assignor gives partition ``p`` of each to one
        member); the next owner loads it from Redis, where every committed batch put it.
        """
        if not isinstance(self._features, PartitionedFeatureSource):
            return
        revoked = {(p.topic, p.partition) for p in partitions}
        try:
            assigned = {(p.topic, p.partition) for p in self._consumer.assignment()}
        except KafkaException:  # closed or lost: nothing stays
            assigned = set()
        kept = {number for topic, number in assigned - revoked}
        self._features.revoke(sorted({number for _, number in revoked} - kept))

    # --- helpers -------------------------------------------------------------------------------

    def _seek(self, positions: dict[TopicPartitionKey, int]) -> None:
        for (topic, partition), offset in positions.items():
            self._consumer.seek(TopicPartition(topic, partition, offset))
        if self._align is not None and positions:  # what they hold will be read again
            now = time.monotonic()
            self._align.rewind(positions, now)
            self._move(self._align.moves(now))

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


def _run_now(call: Callable[[], Any]) -> Future[Any]:
    """``call``'s outcome as a done future, run on this thread.

    The feature update is the partition state in this process (Python, holding the GIL) and
    one write-behind round trip: on a thread of its own it slowed the pipeline (bench/pipeline.py:
    8,281 orders/s on the thread, 9,110 inline), so it runs inline and the batch queue keeps
    only its shape (a failed update is rewound and retried as before).
    """
    future: Future[Any] = Future()
    try:
        future.set_result(call())
    except Exception as exc:  # the caller decides: retried (feature store down) or raised
        future.set_exception(exc)
    return future


def _positions(records: Sequence[Message]) -> list[tuple[str, int, int]]:
    return [(m.topic() or "", m.partition() or 0, m.offset() or 0) for m in records]


def _tp(tp: TopicPartition) -> str:
    return f"{tp.topic}[{tp.partition}]"

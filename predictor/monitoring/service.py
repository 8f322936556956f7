"""``eta monitor``'s loop: Kafka in, the join in Redis, the core, Kafka and files out.

One consumer (its own group) reads deliveries and predictions in batches. Each batch is
decoded (rejects go to the dead-letter topic with their reason), joined in one Redis round
trip, and handed to the ``Monitor``; alerts are produced at once. Every ``publish_s`` the
summaries go to the monitoring topic and Prometheus, the joined pairs to Parquet, the producer
is flushed and only then are offsets committed, so a crash re-reads at most that much (the
join remembers what it matched, so nothing is counted twice). A Redis outage rewinds the batch
and retries it with backoff; it never skips records. A broker outage holds the commit back
until the broker acknowledges what the monitor produced; a stop meanwhile waits at most
``stop_timeout_s`` for it, then says what is left uncommitted (read again after a restart).

Commits are asynchronous, one at a time, their outcome taken between batches: a synchronous
commit waits for the group coordinator with no bound of its own (``session.timeout.ms`` when
the broker is gone, ``socket.timeout.ms`` when it died with the commit in flight), and so does
``Consumer.close`` while a commit is outstanding. So no librdkafka call on the way out waits
past the stop's deadline: the flush and the wait for the last commit end at it, and the
consumer is closed on a thread of its own that the stop leaves behind if the broker holds it.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from predictor.monitoring.core import Monitor
from predictor.monitoring.intake import IntakeConfig, decode_monitor_batch
from predictor.monitoring.join import SHADOW_PREFIX, JoinStore, joined_from, paired_from
from predictor.monitoring.messages import MonitorAlert, MonitorSummary
from predictor.monitoring.metrics import MonitorMetrics
from predictor.monitoring.recording import (
    JoinedLog,
    frame_to_joined,
    frame_to_paired,
    joined_to_predictions,
    paired_frame,
    read_joined,
    read_paired,
    write_summaries,
)
from predictor.monitoring.retrain_job import Retrainer, RetrainJob
from predictor.serving.backoff import backoff_s
from stream_features.contract import encode

__all__ = ["MonitorService", "MonitorStats", "Retrainer", "ServiceOptions"]

log = logging.getLogger("etastream.monitor")
STATUS_EVERY_S = 60.0
"""How often the monitor logs a status line (it publishes every ``publish_s``)."""
CLOSE_GRACE_S = 1.0
"""Least time ``Consumer.close`` gets at a stop (leaving the group), even past the deadline."""

TopicPartitionKey = tuple[str, int]


@dataclass(frozen=True)
class ServiceOptions:
    deliveries_topic: str
    predictions_topic: str
    monitoring_topic: str
    dlq_topic: str
    batch_max_events: int = 2000
    poll_timeout_s: float = 0.2
    publish_s: float = 10.0
    shutdown_timeout_s: float = 30.0
    """Longest wait for the broker to acknowledge a publish while running (a stop cuts it)."""
    stop_timeout_s: float = 5.0
    """Longest wait for the broker to acknowledge the last publish and confirm its commit once
    asked to stop (then at most ``CLOSE_GRACE_S`` more to leave the group)."""
    backoff_base_s: float = 0.05
    backoff_cap_s: float = 5.0
    shadow_topic: str | None = None
    """The worker's shadow records, joined to compare champion and challenger (None: off)."""


@dataclass
class _Commit:
    """A commit sent and not yet answered: its offsets and the records they cover."""

    offsets: dict[TopicPartitionKey, int]
    records: dict[TopicPartitionKey, int]


@dataclass
class MonitorStats:
    batches: int = 0
    records: int = 0
    predictions: int = 0
    joined: int = 0
    duplicates: int = 0
    rejected: int = 0
    alerts: int = 0
    summaries: int = 0
    commits: int = 0
    retries: int = 0
    retrain_runs: int = 0
    uncommitted_records: int = 0
    """Records read but not committed at exit (the broker did not acknowledge the output)."""
    unacknowledged: int = 0
    """Monitoring records the broker had not acknowledged at exit."""


class MonitorService:
    """One monitor process; ``run`` until ``stop`` is set, then publish, flush and commit."""

    def __init__(
        self,
        consumer_config: dict[str, Any],
        producer_config: dict[str, Any],
        join: JoinStore,
        monitor: Monitor,
        intake: IntakeConfig,
        options: ServiceOptions,
        *,
        metrics: MonitorMetrics | None = None,
        record_dir: Path | None = None,
        keep_rows: int = 500_000,
        retrainer: Retrainer | None = None,
        retrain_cooldown_s: float = 21600.0,
        retry_on: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError),
    ) -> None:
        self._join, self._monitor, self._intake, self._o = join, monitor, intake, options
        self._metrics = metrics or MonitorMetrics()
        self._record_dir = record_dir
        self._log = JoinedLog(record_dir, keep_rows) if record_dir is not None else None
        self._shadow_log = (
            JoinedLog(record_dir, keep_rows, "shadow", paired_frame)
            if record_dir is not None
            else None
        )
        self._retrain = RetrainJob(retrainer, retrain_cooldown_s) if retrainer else None
        self._retry_on = retry_on
        self._consumer = Consumer({**consumer_config, "on_commit": self._on_commit})
        self._producer = Producer(producer_config)
        self._errors: list[str] = []
        self._unsent = 0  # records given up at a stop with the local queue full
        self._to_commit: dict[TopicPartitionKey, int] = {}  # processed, not in a commit yet
        self._pending: dict[TopicPartitionKey, int] = {}  # the records those offsets cover
        self._in_flight: _Commit | None = None
        self._answers: list[tuple[KafkaError | None, list[TopicPartition]]] = []
        self._commit_error: str | None = None  # the last failed commit's, for the stop
        self._stop: threading.Event | None = None
        self._closing = False
        self._deadline = 0.0  # the stop's, once closing
        self._last_publish = time.monotonic()
        self._last_status: float | None = None
        self._attempt = 0
        self.stats = MonitorStats()
        self.assigned = threading.Event()

    # --- the loop ---------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> MonitorStats:
        self._stop = stop
        self.open()
        try:
            while not stop.is_set():
                self.step(stop)
        finally:
            self.close()
        return self.stats

    def open(self) -> None:
        """Restore the windows from the recorded pairs of the last day, then join the group."""
        if self._record_dir is not None:
            self.restore(self._record_dir)
        topics = [self._o.deliveries_topic, self._o.predictions_topic]
        if self._o.shadow_topic is not None:
            topics.append(self._o.shadow_topic)
        self._consumer.subscribe(
            topics,
            on_assign=lambda _c, _p: self.assigned.set(),
            on_revoke=self._on_revoke,
        )

    def restore(self, record_dir: Path) -> int:
        """Feed the recorded pairs of the last 24 h of event time back into the windows."""
        shadow = read_paired(record_dir)
        if not shadow.is_empty():
            newest_shadow = shadow["delivered_at"].max()
            assert isinstance(newest_shadow, datetime)
            recent = shadow.filter(pl.col("delivered_at") > newest_shadow - timedelta(days=1))
            self._monitor.add_paired(frame_to_paired(recent))
        frame = read_joined(record_dir)
        if frame.is_empty():
            return 0
        newest = frame["delivered_at"].max()
        assert isinstance(newest, datetime)
        pairs = frame_to_joined(frame.filter(pl.col("delivered_at") > newest - timedelta(days=1)))
        self._monitor.add_joined(pairs)
        self._monitor.add_predictions(joined_to_predictions(pairs))
        self._monitor.alerts(datetime.now(UTC))  # what already fired is not raised again
        log.info("windows restored from recorded pairs", extra={"pairs": len(pairs)})
        return len(pairs)

    def step(self, stop: threading.Event | None = None) -> int:
        """One batch: decode, join, update, alert; publish when due. Records consumed."""
        messages = self._consumer.consume(self._o.batch_max_events, self._o.poll_timeout_s)
        self._settle_commit()  # its answer, if any, came with the batch
        records = [m for m in messages if self._usable(m)]
        if records:
            try:
                self._process(records)
            except self._retry_on as exc:
                self._rewind(records, exc, stop)
                return 0
        self._producer.poll(0)
        self._collect_retraining()
        if time.monotonic() - self._last_publish >= self._o.publish_s:
            self.publish()
        return len(records)

    def _usable(self, message: Message) -> bool:
        err = message.error()
        if err is None:
            return True
        if err.fatal():
            raise KafkaException(err)
        if err.code() != KafkaError._PARTITION_EOF:
            log.warning("consumer error: %s", err)
        return False

    def _process(self, records: list[Message]) -> None:
        now_ms = time.time_ns() // 1_000_000
        batch = decode_monitor_batch(records, self._intake, now_ms)
        result = self._join.join(batch.ops)  # may raise: nothing below has happened yet
        if self._attempt:
            log.info("Redis is back", extra={"attempts": self._attempt})
            self._attempt = 0
        pairs = [joined_from(*p) for p in result.pairs if not p[1].startswith(SHADOW_PREFIX)]
        shadows = [paired_from(*p) for p in result.pairs if p[1].startswith(SHADOW_PREFIX)]
        self._monitor.add_predictions(batch.predictions)
        self._monitor.add_joined(pairs)
        self._monitor.add_paired(shadows)
        self._monitor.count("duplicates", result.duplicates)
        self._monitor.count("rejected", sum(batch.rejected.values()))
        for reason in batch.reasons:
            log.warning("record rejected: %s", reason)
        for out in batch.dead_letters:
            self._send(self._o.dlq_topic, out.key, out.value)
        alerts = self._monitor.alerts(datetime.now(UTC))
        for alert in alerts:
            self._send_alert(alert)
        if self._log is not None:
            self._log.append(pairs)
        if self._shadow_log is not None:
            self._shadow_log.append(shadows)
        self._maybe_retrain(alerts)
        for topic, n in batch.records.items():
            self._metrics.records.labels(topic).inc(n)
        for topic, n in batch.rejected.items():
            self._metrics.rejected.labels(topic).inc(n)
        self._metrics.joined.inc(len(pairs))
        self._metrics.duplicates.inc(result.duplicates)
        self._metrics.observe_alerts(alerts)
        for m in records:
            tp = (m.topic() or "", m.partition() or 0)
            self._to_commit[tp] = max((m.offset() or 0) + 1, self._to_commit.get(tp, 0))
            self._pending[tp] = self._pending.get(tp, 0) + 1
        s = self.stats
        s.batches += 1
        s.records += len(records)
        s.predictions += len(batch.predictions)
        s.joined += len(pairs)
        s.duplicates += result.duplicates
        s.rejected += sum(batch.rejected.values())
        s.alerts += sum(a.state == "firing" for a in alerts)

    def _rewind(
        self, records: list[Message], exc: BaseException, stop: threading.Event | None
    ) -> None:
        first: dict[tuple[str, int], int] = {}
        for m in records:
            tp = (m.topic() or "", m.partition() or 0)
            first[tp] = min(m.offset() or 0, first.get(tp, m.offset() or 0))
        for (topic, partition), offset in first.items():
            self._consumer.seek(TopicPartition(topic, partition, offset))
        delay = backoff_s(self._attempt, self._o.backoff_base_s, self._o.backoff_cap_s)
        self._attempt += 1
        self.stats.retries += 1
        log.warning("Redis unavailable; the batch will be read again", extra={"error": repr(exc)})
        if stop is not None:
            stop.wait(delay)
        else:
            time.sleep(delay)

    # --- output -----------------------------------------------------------------------------

    def _stopping(self) -> bool:
        return self._closing or (self._stop is not None and self._stop.is_set())

    def _send(self, topic: str, key: bytes | None, value: bytes) -> None:
        while True:
            try:
                self._producer.produce(topic, value, key, on_delivery=self._check)
                return
            except BufferError:  # the local queue is full: let deliveries drain it
                if self._stopping() and (not self._closing or time.monotonic() >= self._deadline):
                    self._unsent += 1  # nothing is committed after it (see publish)
                    return
                self._producer.poll(0.05)

    def _check(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self._errors.append(str(err))

    def _send_alert(self, alert: MonitorAlert) -> None:
        key = f"{alert.kind}:{alert.scope}:{alert.key}:{alert.feature or ''}"
        self._send(self._o.monitoring_topic, key.encode(), encode(alert))
        log.warning(
            "alert %s: %s %s %s", alert.state, alert.kind, alert.key, alert.feature or "",
            extra={"value": alert.value, "threshold": alert.threshold, "window": alert.window},
        )  # fmt: skip

    def publish(self) -> bool:
        """Summaries out, files written, producer flushed, then offsets committed; whether the
        broker acknowledged everything. The commit is sent, its answer taken between batches;
        at a stop ``close`` commits, and waits for the answer."""
        self._last_publish = time.monotonic()
        summaries = self._monitor.summaries(datetime.now(UTC))
        for summary in summaries:
            self._send(self._o.monitoring_topic, summary.window.encode(), encode(summary))
        self._metrics.publish(summaries)
        self.stats.summaries += len(summaries)
        self._log_status(summaries)
        if self._record_dir is not None:
            write_summaries(self._record_dir, summaries)
        if self._log is not None:
            self._log.flush()
        if self._shadow_log is not None:
            self._shadow_log.flush()
        left = self._flush() + self._unsent
        if left or self._errors:
            if not self._stopping():  # at a stop, close() says it once, with the totals
                log.error(
                    "monitoring records not acknowledged; offsets not committed",
                    extra={"unacknowledged": left, "errors": self._errors[:5]},
                )
            self.stats.unacknowledged = left
            if not self._closing:
                self._errors.clear()
            return False
        self.stats.unacknowledged = 0
        if not self._closing:
            self._commit()
        return True

    def _flush(self) -> int:
        """Wait for the broker to acknowledge what was produced; the records still waiting.

        While running the wait ends at ``shutdown_timeout_s`` or at a stop, whichever comes
        first; once stopping, at ``stop_timeout_s``: a broker that is down never holds a stop.
        """
        if self._closing:
            return int(self._producer.flush(max(self._deadline - time.monotonic(), 0.0)))
        deadline = time.monotonic() + self._o.shutdown_timeout_s
        while True:
            left = int(self._producer.flush(min(0.5, max(deadline - time.monotonic(), 0.0))))
            if not left or time.monotonic() >= deadline:
                return left
            if self._stop is not None and self._stop.is_set():
                return left

    def _log_status(self, summaries: list[MonitorSummary]) -> None:
        """A line a minute, so an operator watching the terminal sees the monitor at work."""
        now = time.monotonic()
        if self._last_status is not None and now - self._last_status < STATUS_EVERY_S:
            return
        self._last_status = now
        overall = next(
            (e for m in summaries if m.window == "15m" for e in m.errors if e.scope == "all"),
            None,
        )
        log.info(
            "monitoring: %d predictions, %d joined with their delivery, 15 min MAE %s",
            self.stats.predictions,
            self.stats.joined,
            "-" if overall is None or overall.mae_s is None else f"{overall.mae_s:.0f} s",
            extra={"alerts": self.stats.alerts, "rejected": self.stats.rejected},
        )

    def _commit(self) -> bool:
        """Send the offsets of what is processed, asynchronously (one commit at a time: while
        one is unanswered the offsets wait for the next publish); whether it was sent."""
        self._settle_commit()
        if self._in_flight is not None:
            return False
        if not self._to_commit:
            return True
        offsets = [TopicPartition(t, p, o) for (t, p), o in self._to_commit.items()]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as exc:  # kept: the next publish commits them again
            self._commit_error = str(exc)
            if not self._closing:
                log.warning("commit failed: %s", exc)
            return False
        self._in_flight = _Commit(self._to_commit, self._pending)
        self._to_commit, self._pending = {}, {}
        return True

    def _on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """librdkafka's answer to a commit (inside consume, poll or close): kept for
        ``_settle_commit``, which the loop's thread runs."""
        self._answers.append((err, partitions))

    def _settle_commit(self) -> None:
        """Take the answer to the commit in flight: counted when it succeeded; what failed goes
        back to be committed by the next publish (while running: only partitions still ours)."""
        while self._answers:
            err, partitions = self._answers.pop(0)
            done, self._in_flight = self._in_flight, None
            if done is None:
                continue
            if err is not None and err.code() == KafkaError._NO_OFFSET:
                err = None  # nothing new to commit: these offsets are the group's already
            failed = set(done.offsets) if err is not None else set()
            failed |= {(p.topic, p.partition) for p in partitions if p.error is not None}
            if not failed:
                self.stats.commits += 1
                continue
            errors = [p.error for p in partitions if p.error is not None]
            reason = str(err if err is not None else errors[0])
            self._commit_error = reason
            ours = (
                failed
                if self._closing
                else {(p.topic, p.partition) for p in self._consumer.assignment()}
            )
            for tp in failed & ours:
                self._to_commit[tp] = max(done.offsets[tp], self._to_commit.get(tp, 0))
                self._pending[tp] = self._pending.get(tp, 0) + done.records.get(tp, 0)
            if not self._closing:
                log.warning("commit failed: %s", reason, extra={"partitions": len(failed)})

    def _commit_at_stop(self, acknowledged: bool) -> None:
        """The answer to the commit in flight, then (once, when the broker has acknowledged the
        output) the commit of the rest and its answer, waiting no later than the deadline.
        Records polled meanwhile are dropped: not processed, so not committed either."""
        sent = False
        while True:
            self._settle_commit()
            if self._in_flight is None:
                if sent or not acknowledged or not self._to_commit or not self._commit():
                    return
                sent = True
            left = self._deadline - time.monotonic()
            if left <= 0:
                return
            self._consumer.poll(min(left, 0.1))

    def _uncommitted(self) -> tuple[int, list[TopicPartitionKey]]:
        """Records read and not known to be committed, and their partitions."""
        records = dict(self._pending)
        if self._in_flight is not None:
            for tp, n in self._in_flight.records.items():
                records[tp] = records.get(tp, 0) + n
        return sum(records.values()), sorted(set(records) | set(self._to_commit))

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if not self._closing:  # close() has published already, and says what it could not
            self.publish()
            revoked = {(p.topic, p.partition) for p in partitions}
            dropped = sum(self._pending.pop(tp, 0) for tp in revoked)
            for tp in revoked:
                self._to_commit.pop(tp, None)
            if dropped:
                log.warning(
                    "%d records of revoked partitions left uncommitted; their next owner reads "
                    "them again",
                    dropped,
                )
        self.assigned.clear()

    # --- retraining -------------------------------------------------------------------------

    def _maybe_retrain(self, alerts: list[MonitorAlert]) -> None:
        if self._retrain is not None and self._retrain.maybe_start(alerts, self._flush_log):
            self.stats.retrain_runs += 1

    def _flush_log(self) -> None:
        if self._log is not None:
            self._log.flush()  # the retrainer reads what is on disk

    def _collect_retraining(self, wait: bool = False) -> None:
        report = self._retrain.collect(wait) if self._retrain is not None else None
        if report is not None:
            self._send(self._o.monitoring_topic, report.model_name.encode(), encode(report))

    # --- shutdown ---------------------------------------------------------------------------

    def close(self) -> None:
        """Publish, flush and commit within ``stop_timeout_s``; say what is left over; leave
        the group (``CLOSE_GRACE_S`` at least, then without waiting for the broker)."""
        self._deadline = time.monotonic() + self._o.stop_timeout_s
        try:
            self._collect_retraining(wait=True)
            self._closing = True
            self._deadline = time.monotonic() + self._o.stop_timeout_s  # after the retraining
            self._commit_at_stop(self.publish())
            records, _ = self._uncommitted()
            self.stats.uncommitted_records = records
            if records or self.stats.unacknowledged:
                self._report_uncommitted()
        finally:
            self._close_consumer(max(self._deadline - time.monotonic(), CLOSE_GRACE_S))
            if self._retrain is not None:
                self._retrain.shutdown()
            log.info("monitor stopped", extra=vars(self.stats))

    def _close_consumer(self, timeout_s: float) -> None:
        """``Consumer.close`` waits for a commit still in flight, as long as the coordinator
        keeps it (a session timeout, up to a socket timeout): on a thread, joined at most
        ``timeout_s``. Left behind, it holds nothing of the monitor's; the group drops this
        member after its session timeout."""

        def close() -> None:
            try:
                self._consumer.close()
            except (KafkaException, RuntimeError) as exc:
                log.warning("closing the consumer failed: %s", exc)

        closer = threading.Thread(target=close, name="eta-monitor-close", daemon=True)
        closer.start()
        closer.join(timeout_s)
        if closer.is_alive():
            log.warning(
                "the consumer did not leave the group within %.1f s (the broker is not "
                "answering); exiting without it: the group drops this member after its "
                "session timeout",
                timeout_s,
            )

    def _report_uncommitted(self) -> None:
        """The stop's last word when it could not finish: what the broker did not take."""
        records, partitions = self._uncommitted()
        left = self.stats.unacknowledged
        within = f"within {self._o.stop_timeout_s:g} s"
        if left:
            why = f"the broker did not acknowledge {left} monitoring records {within}"
        elif self._errors:
            why = f"the broker refused monitoring records ({self._errors[0]})"
        elif self._in_flight is not None:
            why = f"the broker did not confirm the commit {within}"
        else:
            why = f"the commit failed ({self._commit_error or 'no answer'})"
        extra = {
            "records": records,
            "unacknowledged": left,
            "partitions": [f"{t}[{p}]" for t, p in partitions],
        }
        if records:
            log.error(
                "%d records left uncommitted: %s; the monitor's group reads them again after "
                "a restart (the join remembers what it matched, so none is counted twice)",
                records,
                why,
                extra=extra,
            )
        else:
            log.error(
                "every record read is committed, but %s: the last summaries or alerts are "
                "lost (the next run publishes fresh summaries)",
                why,
                extra=extra,
            )

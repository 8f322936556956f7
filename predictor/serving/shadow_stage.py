"""The stream worker's shadow: a challenger scores each served batch, on the record only.

``ShadowStage`` is called by the engine once a batch's predictions are handed to the
producer, with the batch's feature rows and its result. It takes the model at its stage once
per batch (``ModelHandle.peek``: a promotion is picked up between batches), scores the same
rows in one vectorised call on a thread of its own, and hands one ``ShadowPrediction`` per
served order to its sink (a producer of its own, ``KafkaShadowSink``). The primary path never
waits for it: a batch that finds the shadow still busy with ``max_pending`` batches is skipped
and counted, and a missing or failing challenger is counted and logged. Shadow records are
at-most-once: nothing tracks their delivery, so they never hold back an offset commit.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
import orjson
from prometheus_client import Counter

from predictor.models.shadow import ShadowScorer
from predictor.serving.pipeline import BatchResult
from stream_features.contract import SCHEMA_VERSION, STREAM_MODE, to_json
from stream_features.vectors import FeatureRows

__all__ = [
    "AT_MOST_ONCE",
    "KafkaShadowSink",
    "ShadowSink",
    "ShadowStage",
    "kafka_shadow_stage",
    "served_orders",
    "shadow_records",
]

log = logging.getLogger("etastream.shadow")


class ShadowSink(Protocol):
    """Where shadow records go: ``send`` must not block (drop and say False instead)."""

    def send(self, key: bytes, value: bytes) -> bool: ...

    def flush(self, timeout_s: float) -> None: ...


AT_MOST_ONCE: dict[str, Any] = {"enable.idempotence": False, "acks": 1, "linger.ms": 20}
"""A shadow producer's settings over the predictions' producer config: not idempotent, one
ack, no retries to wait for (at most once), so it holds nothing of the primary's back."""


class KafkaShadowSink:
    """A producer of the shadow's own: its queue, acks and failures never touch the primary's
    (whose deliveries gate the offset commits, or which may be transactional)."""

    def __init__(self, producer: Any, topic: str, failed: Counter) -> None:
        self._p, self._topic, self._failed = producer, topic, failed

    def send(self, key: bytes, value: bytes) -> bool:
        try:
            self._p.produce(self._topic, value, key, on_delivery=self._check)
        except BufferError:  # full: at most once, the primary comes first
            return False
        self._p.poll(0)
        return True

    def _check(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self._failed.labels("delivery").inc()

    def flush(self, timeout_s: float) -> None:
        self._p.flush(timeout_s)


def served_orders(rows: FeatureRows, result: BatchResult) -> tuple[list[int], list[float], str]:
    """The row of each order ``result`` served, the duration served for it, and the path that
    served them (the predictions' ``mode``: one path scores a whole batch).

    Read back from the predictions that went out, so the shadow compares with exactly what was
    served (an order the champion dead-lettered has no row here).
    """
    index = {order.order_id: i for i, order in enumerate(rows.orders)}
    at: list[int] = []
    durations: list[float] = []
    mode = STREAM_MODE
    for record in result.predictions:
        served = orjson.loads(record.value)
        i = index.get(served["order_id"])
        if i is not None:
            at.append(i)
            durations.append(float(served["predicted_duration_s"]))
            mode = served["mode"]
    return at, durations, mode


def shadow_records(
    rows: FeatureRows,
    at: list[int],
    champion: list[float],
    challenger: np.ndarray,
    *,
    model_name: str,
    champion_version: str,
    stage: str,
    version: str,
    served_at: datetime,
    mode: str = STREAM_MODE,
) -> list[tuple[bytes, bytes]]:
    """One ``ShadowPrediction`` (key, value) per served order ``rows.orders[at[j]]``: the
    champion served ``champion[j]``, the challenger says ``challenger[j]`` (a non-finite one
    leaves its order out)."""
    out: list[tuple[bytes, bytes]] = []
    for i, served, duration in zip(at, champion, challenger.tolist(), strict=True):
        if not np.isfinite(duration):
            continue
        order = rows.orders[i]
        message = {
            "schema_version": SCHEMA_VERSION,
            "type": "ShadowPrediction",
            "order_id": order.order_id,
            "store_id": order.store_id,
            "market_id": order.market_id,
            "created_at": order.created_at,
            "model_name": model_name,
            "champion_version": champion_version,
            "champion_predicted_duration_s": served,
            "challenger_stage": stage,
            "challenger_version": version,
            "challenger_predicted_duration_s": max(duration, 0.0),
            "served_at": served_at,
            "mode": mode,
        }
        out.append((order.order_id.encode(), to_json(message)))
    return out


class ShadowStage:
    """Score served batches with ``scorer``'s model off the primary path; see the module doc."""

    def __init__(
        self,
        scorer: ShadowScorer,
        sink: ShadowSink,
        *,
        scored: Counter,
        failures: Counter,
        max_pending: int = 4,
    ) -> None:
        self.scorer, self._sink = scorer, sink
        self._scored, self._failures = scored, failures
        self._max_pending = max_pending
        self._pending = 0
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="eta-shadow")
        self._missing_logged = False

    @property
    def stage(self) -> str:
        return self.scorer.handle.stage

    def __call__(self, rows: FeatureRows | None, result: BatchResult) -> None:
        """Queue the batch for the shadow (returns at once); skipped and counted when full."""
        if rows is None or not len(rows) or not result.predictions:
            return
        with self._lock:
            if self._pending >= self._max_pending:
                self._failures.labels("busy").inc()
                return
            self._pending += 1
        self._pool.submit(self._run, rows, result)

    def _run(self, rows: FeatureRows, result: BatchResult) -> None:
        try:
            self.score(rows, result)
        except Exception as exc:  # the shadow never stops the worker
            self._failures.labels("error").inc()
            log.warning("shadow %s failed: %s", self.stage, exc)
        finally:
            with self._lock:
                self._pending -= 1

    def score(self, rows: FeatureRows, result: BatchResult) -> int:
        """Score and send one batch on this thread; the number of shadow records sent."""
        handle = self.scorer.handle
        model = handle.peek()  # once per batch: a swap lands between batches
        if model is None:
            self._failures.labels("missing").inc()
            if not self._missing_logged:
                log.warning(
                    "no model at %s@%s yet: batches are not shadowed", handle.name, handle.stage
                )
                self._missing_logged = True
            return 0
        self._missing_logged = False
        at, champion, mode = served_orders(rows, result)
        if not at:
            return 0
        values = rows.values if len(at) == len(rows) else rows.values[at]
        errors = self.scorer.errors
        record = self.scorer.score(values, _Served(result.model_version), np.asarray(champion))
        if record is None:
            if self.scorer.errors > errors:
                self._failures.labels("error").inc()
            return 0
        out = shadow_records(
            rows,
            at,
            champion,
            record.shadow_predictions,
            model_name=result.model_name,
            champion_version=result.model_version,
            stage=handle.stage,
            version=record.shadow_version,
            served_at=datetime.fromtimestamp(record.at, UTC),
            mode=mode,
        )
        sent = 0
        for key, value in out:
            if self._sink.send(key, value):
                sent += 1
            else:
                self._failures.labels("dropped").inc()
        self._scored.inc(sent)
        return sent

    def close(self, timeout_s: float = 10.0) -> None:
        """Finish the batches queued, then flush the sink (bounded by ``timeout_s``)."""
        self._pool.shutdown(wait=True)
        self._sink.flush(timeout_s)


class _Served:
    """The served model as ``ShadowScorer`` records it: its version."""

    def __init__(self, version: str) -> None:
        self.version = version


def kafka_shadow_stage(
    producer_config: dict[str, Any],
    topic: str,
    scorer: ShadowScorer,
    *,
    scored: Counter,
    failures: Counter,
    max_pending: int = 4,
) -> ShadowStage:
    """A ``ShadowStage`` writing ``topic`` through a producer of its own: ``producer_config``
    (the predictions' producer config) with ``AT_MOST_ONCE`` over it."""
    from confluent_kafka import Producer

    producer = Producer({**producer_config, **AT_MOST_ONCE})
    sink = KafkaShadowSink(producer, topic, failures)
    return ShadowStage(scorer, sink, scored=scored, failures=failures, max_pending=max_pending)

"""A backlog whose partitions the consumer reads hours apart in event time, through one
confluent worker: aligned, no event is late; with alignment off (ETA_ALIGN_MARGIN_S=0), many are.

Three hours of a steady marketplace (50 stores in 4 markets, an order every 5 s, each delivered
20–60 minutes later, a supply snapshot per market a minute) on two partitions per topic, the
whole backlog produced before the worker starts and topic after topic (deliveries first, orders
last), so neither the produce order nor the Kafka timestamps follow event time. The consumer
then gets each partition in large runs: a run of one partition's snapshots spans hours, and a
store's deliveries and a market's orders on the other partitions would fall behind the newest
event time the feature store applied by more than the lateness bound (5 minutes).
"""

from __future__ import annotations

import time
from collections import Counter

import orjson
import pytest

from predictor.engines.wiring import redis_features
from predictor.serving.metrics import StreamMetrics
from stream_features.kafka_clients import ensure_topics
from stream_features.settings import Settings
from tests.integration.worker_helpers import TopicReader, produce, running_worker
from tests.reliability.traffic import steady_records
from tests.serving_fakes import LinearModel

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EVENTS = 4_800  # three hours of event time


def _backlog(settings: Settings) -> tuple[int, set[bytes]]:
    """Produce the backlog, topic after topic; (records, order ids)."""
    topics = {
        "orders": settings.orders_topic,
        "deliveries": settings.deliveries_topic,
        "dasher-events": settings.dasher_events_topic,
    }
    by_kind: dict[str, list[tuple[str, bytes | None, bytes | None]]] = {k: [] for k in topics}
    orders: set[bytes] = set()
    for kind, key, value in steady_records(
        EVENTS, stores=50, markets=4, spacing_s=5.0, snapshot_every_s=60.0
    ):
        by_kind[kind].append((topics[kind], key, value))
        if kind == "orders":
            orders.add(orjson.loads(value)["order_id"].encode())
    sent = sum(produce(settings, by_kind[k]) for k in ("deliveries", "dasher-events", "orders"))
    return sent, orders


def _drain(settings: Settings, key_prefix: str) -> tuple[float, float]:
    """Run one worker until it has consumed the whole backlog; (late events, partitions paused
    at the end)."""
    sent, orders = _backlog(settings)
    metrics = StreamMetrics()
    sample = metrics.registry.get_sample_value
    topics = (settings.orders_topic, settings.deliveries_topic, settings.dasher_events_topic)
    reader = TopicReader(settings, settings.predictions_topic)
    features = redis_features(settings, settings.redis_url_value() or "", key_prefix)
    with running_worker(settings, features, LinearModel(), metrics) as worker:
        got = reader.read_until(lambda m: len(m) >= len(orders), timeout_s=60)
        deadline = time.monotonic() + 30
        while sum(sample("eta_stream_events_total", {"topic": t}) or 0 for t in topics) < sent:
            assert time.monotonic() < deadline, "the worker did not consume the whole backlog"
            time.sleep(0.05)
    reader.close()
    counts = Counter(m.key() for m in got)
    assert set(counts) == orders, f"{len(set(counts) & orders)} of {len(orders)} predicted"
    assert worker.stats.predictions == len(orders), "an order was read twice"
    late = sample("eta_stream_feature_events_total", {"outcome": "late"}) or 0.0
    return late, sample("eta_stream_paused_partitions") or 0.0


@pytest.fixture()
def two_partitions(settings: Settings) -> Settings:
    settings = settings.model_copy(update={"topic_partitions": 2})
    ensure_topics(settings)
    return settings


def test_an_aligned_backlog_has_no_late_events(two_partitions: Settings, key_prefix: str) -> None:
    late, paused = _drain(two_partitions, key_prefix)
    print(f"\naligned: {late:.0f} late events")
    assert late == 0
    assert paused == 0, "a partition was left paused with nothing to wait for"


def test_without_alignment_the_same_backlog_has_late_events(
    two_partitions: Settings, key_prefix: str
) -> None:
    late, paused = _drain(two_partitions.model_copy(update={"align_margin_s": 0}), key_prefix)
    print(f"\nnot aligned: {late:.0f} late events of {EVENTS}")
    assert late > 0
    assert paused == 0

"""Old events behind live ones (issue #22, bug 1): the worker drains them at backlog speed.

The README's walkthrough once simulated live traffic first and then replayed a week of history
stamped in the past, paced (``--speed 3600``): each partition then holds live records followed
by tens of thousands of old ones in record batches of one or two, as a paced producer writes
them. The embedded broker (Tansu) takes longer than a 10 ms long poll to read such a partition
and answers that fetch with one batch or none, so the worker's fetch wait of 10 ms drained the
old part at ~100 events/s per partition, with nothing paused (``wiring._latency_tuning``).

Semantics checked here: old events more than the lateness bound behind their entity's newest
event are counted late and left out of its windows (per-partition state, by design); every old
order still gets its prediction, the whole backlog is consumed and committed, and no partition
is left paused.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, TopicPartition

from bench.loads import old_records, produce_in_small_batches
from predictor.engines.wiring import redis_features
from predictor.serving.metrics import StreamMetrics
from stream_features.contract import encode
from stream_features.kafka_clients import consumer_config, ensure_topics
from stream_features.settings import Settings
from tests.integration.worker_helpers import TopicReader, live_orders, produce, running_worker
from tests.serving_fakes import LinearModel

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LIVE_ORDERS = 2_000
OLD_SNAPSHOTS = 24_000  # a week of snapshots for a few markets, two per record batch
OLD_ORDERS = 6_000  # their stores' orders, two per record batch
DRAIN_DEADLINE_S = 60.0  # measured: ~5 s with the fix, nowhere near done in 60 s without


def _committed_behind(settings: Settings, topics: tuple[str, ...]) -> dict[str, int]:
    """Records of each topic the group has not committed (the end offsets as the broker says)."""
    probe = Consumer(consumer_config(settings))
    try:
        parts = [TopicPartition(t, 0) for t in topics]
        behind = {}
        for tp in probe.committed(parts, timeout=10):
            _low, high = probe.get_watermark_offsets(TopicPartition(tp.topic, 0), timeout=10)
            behind[tp.topic] = max(high - max(tp.offset, 0), 0)
        return behind
    finally:
        probe.close()


@pytest.fixture()
def one_partition(settings: Settings) -> Settings:
    """One partition per topic: every old record batch of a topic in one partition."""
    settings = settings.model_copy(update={"topic_partitions": 1})
    ensure_topics(settings)
    return settings


def test_old_events_behind_live_ones_drain_at_backlog_speed(
    one_partition: Settings, key_prefix: str
) -> None:
    settings = one_partition
    live = live_orders(LIVE_ORDERS, "live-", stores=40)
    sent = produce(
        settings, ((settings.orders_topic, o.store_id.encode(), encode(o)) for o in live)
    )
    sent += produce_in_small_batches(settings, old_records(settings, OLD_ORDERS, OLD_SNAPSHOTS))
    orders = LIVE_ORDERS + OLD_ORDERS

    metrics = StreamMetrics()
    sample = metrics.registry.get_sample_value
    topics = (settings.orders_topic, settings.dasher_events_topic, settings.deliveries_topic)
    reader = TopicReader(settings, settings.predictions_topic)
    features = redis_features(settings, settings.redis_url_value() or "", key_prefix)
    with running_worker(settings, features, LinearModel(), metrics) as worker:
        started = time.monotonic()
        deadline = started + DRAIN_DEADLINE_S
        consumed = 0.0
        while consumed < sent:
            consumed = sum(sample("eta_stream_events_total", {"topic": t}) or 0 for t in topics)
            assert time.monotonic() < deadline, (
                f"{consumed:.0f} of {sent} records consumed in {DRAIN_DEADLINE_S:.0f} s: the "
                "backlog crawls"
            )
            time.sleep(0.05)
        drain_s = time.monotonic() - started
        got = reader.read_until(lambda m: len(m) >= orders, timeout_s=30)
        behind = _committed_behind(settings, topics)
        while any(behind.values()) and time.monotonic() < deadline + 10:  # a commit a second
            time.sleep(0.2)
            behind = _committed_behind(settings, topics)
    reader.close()
    late = sample("eta_stream_feature_events_total", {"outcome": "late"}) or 0.0
    paused = sample("eta_stream_paused_partitions") or 0.0
    print(f"\n{sent} records ({orders} orders) drained in {drain_s:.1f} s: {late:.0f} late")
    assert len({m.key() for m in got}) == orders, "an order got no prediction"
    assert worker.stats.predictions == orders
    assert not any(behind.values()), f"left uncommitted: {behind}"
    assert paused == 0, "a partition was left paused"
    # the old events are more than the lateness bound behind the live ones their stores and
    # markets applied first: counted late and left out of the windows, as per-partition state does
    assert late >= OLD_SNAPSHOTS + OLD_ORDERS - 100

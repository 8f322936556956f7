"""The stream worker against the real broker and Redis: every order predicted, poison kept.

Each test runs on both engines (confluent and faust), in a thread of the test process with a
model of known output; the process-level tests (signals) are in ``test_worker_processes``.
"""

from __future__ import annotations

import base64
import contextlib
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import redis
from confluent_kafka import Consumer, TopicPartition

from predictor.engines.errors import EngineConfigError
from predictor.engines.wiring import faust_worker, redis_features
from predictor.serving.dlq import decode_dead_letter
from predictor.serving.latest import LatestPredictions, latest_key
from predictor.serving.metrics import StreamMetrics
from stream_features.contract import DeliveryPrediction, OrderCreated, encode
from stream_features.kafka_clients import consumer_config, ensure_topics
from stream_features.settings import Settings
from stream_features.stack import free_port, start_stack
from tests.integration.worker_helpers import (
    TopicReader,
    live_orders,
    produce,
    produce_orders,
    publish_simulated,
    running_worker,
)
from tests.polling import wait_until
from tests.serving_fakes import LinearModel, dasher_event

pytestmark = pytest.mark.integration

ENGINES = ["confluent", "faust"]
ORDERS = {"confluent": 100_000, "faust": 20_000}
"""The issue's 100,000 orders through the confluent engine (about 10 s here); Faust moves about
3,500 orders/s on this machine, so it gets 20,000 (bench/stream.py measures both)."""


@pytest.fixture()
def topics(settings: Settings) -> Settings:
    ensure_topics(settings)
    return settings


@pytest.mark.parametrize("engine", ENGINES)
def test_every_order_gets_exactly_one_prediction(
    topics: Settings, key_prefix: str, redis_client: redis.Redis, engine: str
) -> None:
    """A simulated marketplace (orders, deliveries, dasher events, snapshots) in, and exactly
    one prediction out per order, each naming the model version that scored it; the same bytes
    are cached in Redis for the HTTP API."""
    settings = topics
    orders = publish_simulated(settings, ORDERS[engine])
    reader = TopicReader(settings, settings.predictions_topic)
    features = redis_features(settings, settings.redis_url_value() or "", key_prefix)
    latest = LatestPredictions(redis_client, key_prefix, ttl_s=600)
    started = time.monotonic()
    with running_worker(
        settings,
        features,
        LinearModel(version="3"),
        engine=engine,
        after_scored=latest.store_result,
    ) as worker:
        got = reader.read_until(lambda m: len(m) >= len(orders), timeout_s=90)
    elapsed = time.monotonic() - started
    reader.close()
    preds = [DeliveryPrediction.model_validate_json(m.value() or b"") for m in got]
    ids = [p.order_id for p in preds]
    assert len(ids) == len(orders), f"{len(ids)} predictions for {len(orders)} in {elapsed:.0f} s"
    assert set(ids) == {o.order_id for o in orders}
    assert {(p.model_name, p.model_version, p.mode) for p in preds} == {("eta", "3", "streaming")}
    assert [m.key() for m in got] == [p.order_id.encode() for p in preds]
    assert worker.stats.predictions == len(orders) and worker.stats.dead_letters == 0
    assert worker.stats.commits > 0
    produced = {m.key(): m.value() for m in got}
    keys = list(produced)
    cached = [
        value
        for i in range(0, len(keys), 5000)
        for value in redis_client.mget(
            [latest_key(key_prefix, k.decode()) for k in keys[i : i + 5000] if k]
        )
    ]
    assert cached == list(produced.values()) and latest.failures == 0


@pytest.mark.parametrize("engine", ENGINES)
def test_poison_lands_in_the_dlq_with_reasons(
    topics: Settings, key_prefix: str, engine: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Also: the worker leaves nothing in its working directory (Faust makes ``<id>-data``
    there unless given a datadir)."""
    monkeypatch.chdir(tmp_path)
    settings = topics
    good = live_orders(3, "g")
    poison: list[tuple[str, bytes | None, bytes | None]] = [
        (settings.orders_topic, b"k1", b"\xff\xfe not json"),
        (settings.orders_topic, b"k2", b'{"type": "OrderCreated", "order_id": 5}'),
        (settings.orders_topic, b"k3", b"x" * (settings.max_message_bytes + 1)),
        (settings.orders_topic, b"k4", dasher_event()),  # right message, wrong topic
        (settings.deliveries_topic, None, b'{"schema_version": 9, "type": "OrderDelivered"}'),
    ]
    good_records = [(settings.orders_topic, o.store_id.encode(), encode(o)) for o in good]
    produce(settings, [good_records[0], *poison[:3], good_records[1], *poison[3:], good_records[2]])
    dlq = TopicReader(settings, settings.dlq_topic)
    preds = TopicReader(settings, settings.predictions_topic)
    features = redis_features(settings, settings.redis_url_value() or "", key_prefix)
    with running_worker(settings, features, LinearModel(), engine=engine):
        letters = dlq.read_until(lambda m: len(m) >= len(poison), timeout_s=30)
        predicted = preds.read_until(lambda m: len(m) >= len(good), timeout_s=30)
    dlq.close()
    preds.close()
    assert {m.key() for m in predicted} == {o.order_id.encode() for o in good}
    decoded = sorted(
        (decode_dead_letter(m.value() or b"") for m in letters), key=lambda d: d.key or ""
    )
    assert len(decoded) == len(poison)
    by_value = {base64.b64decode(d.value_b64): d for d in decoded}
    for topic, key, value in poison:
        letter = by_value[value or b""]
        assert letter.source_topic == topic
        assert letter.key == (key.decode() if key else None)
        assert letter.source_offset is not None and letter.source_partition is not None
        assert letter.reason
    assert "over the" in by_value[b"x" * (settings.max_message_bytes + 1)].reason
    assert by_value[dasher_event()].field == "type"
    assert {m.key() for m in letters} == {k for _, k, _ in poison}
    assert list(tmp_path.iterdir()) == []


def _stream(
    settings: Settings, orders: list[OrderCreated], chunk: int = 1000, pause_s: float = 0.05
) -> threading.Thread:
    def run() -> None:
        for start in range(0, len(orders), chunk):
            produce_orders(settings, orders[start : start + chunk])
            time.sleep(pause_s)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("engine", ENGINES)
def test_a_member_joining_mid_stream_loses_nothing(
    topics: Settings, key_prefix: str, engine: str
) -> None:
    """Confluent: the old owner finishes and commits in on_revoke, so the new one starts where
    it ended and nothing is predicted twice. Faust: nothing lost; duplicates are counted."""
    settings = topics
    orders = live_orders(20_000, "r")
    expected = {o.order_id.encode() for o in orders}
    reader = TopicReader(settings, settings.predictions_topic)
    url = settings.redis_url_value() or ""
    features_a = redis_features(settings, url, key_prefix)
    with running_worker(settings, features_a, LinearModel(), engine=engine) as a:
        assert a.assigned.wait(30)
        producer = _stream(settings, orders)
        reader.read_until(lambda m: len(m) >= 2000, timeout_s=30)
        features_b = redis_features(settings, url, key_prefix)
        with running_worker(settings, features_b, LinearModel(), engine=engine) as b:
            producer.join(60)
            # every order, however many duplicates come first (faust's count may reach 20,000
            # before the last orders do)
            got = reader.read_until(lambda m: expected <= {x.key() for x in m}, timeout_s=60)
            assert b.stats.predictions > 0, "the second member never got partitions"
    reader.close()
    counts = Counter(m.key() for m in got)
    assert set(counts) == expected
    duplicates = sum(counts.values()) - len(orders)
    print(f"\n{engine}: {duplicates} duplicates across a rebalance under load")
    if engine == "confluent":
        assert duplicates == 0, "a rebalance made the new owner read again"


@pytest.mark.parametrize("engine", ENGINES)
def test_redis_outage_retries_the_batch_and_loses_nothing(
    topics: Settings, tmp_path: Path, engine: str
) -> None:
    """Stop the worker's Redis mid-stream, start it again on the same port: no order missing."""
    settings = topics
    redis_only = Settings(
        kafka_bootstrap_servers=settings.kafka_bootstrap_servers,
        embedded_redis_port=free_port(),
        data_dir=tmp_path / "redis",
    )
    first, second = live_orders(3000, "before"), live_orders(3000, "during")
    metrics = StreamMetrics()
    reader = TopicReader(settings, settings.predictions_topic)
    outage = contextlib.ExitStack()
    urls = outage.enter_context(start_stack(redis_only))
    features = redis_features(settings, urls.redis_url)
    with running_worker(settings, features, LinearModel(), metrics, engine=engine):
        produce_orders(settings, first)
        reader.read_until(lambda m: len(m) >= len(first), timeout_s=30)
        outage.close()  # SIGTERM to redis-server: the worker's next batch fails
        produce_orders(settings, second)
        wait_until(lambda: _retries(metrics) >= 2, 30, "a retry")
        predicted = metrics.registry.get_sample_value("eta_stream_predictions_total")
        assert predicted == len(first), "a prediction was made without Redis"
        with start_stack(redis_only):  # the same port and data dir: the worker reconnects
            got = reader.read_until(lambda m: len(m) >= len(first) + len(second), timeout_s=60)
    reader.close()
    assert {m.key() for m in got} == {o.order_id.encode() for o in first + second}


def _retries(metrics: StreamMetrics) -> float:
    value = metrics.registry.get_sample_value("eta_stream_retries_total", {"cause": "features"})
    return value or 0.0


def test_exactly_once_mode_commits_offsets_inside_the_transaction(
    topics: Settings, key_prefix: str
) -> None:
    settings = topics.model_copy(update={"exactly_once": True})
    orders = live_orders(5000, "x")
    produce_orders(settings, orders)
    reader = TopicReader(settings, settings.predictions_topic, isolation="read_committed")
    features = redis_features(settings, settings.redis_url_value() or "", key_prefix)
    with running_worker(settings, features, LinearModel()) as worker:
        got = reader.read_until(lambda m: len(m) >= len(orders), timeout_s=60)
    reader.close()
    assert sorted(m.key() or b"" for m in got) == sorted(o.order_id.encode() for o in orders)
    assert worker.stats.commits == worker.stats.batches > 0  # one transaction per batch
    consumer = Consumer(consumer_config(settings))
    partitions = [TopicPartition(settings.orders_topic, p) for p in range(4)]
    committed = consumer.committed(partitions, timeout=10)
    consumer.close()
    assert sum(max(tp.offset, 0) for tp in committed) == len(orders)


def test_faust_refuses_exactly_once(topics: Settings) -> None:
    settings = topics.model_copy(update={"exactly_once": True})
    features = redis_features(settings, settings.redis_url_value() or "")
    with pytest.raises(EngineConfigError, match="confluent engine"):
        faust_worker(settings, features, LinearModel)


@pytest.mark.parametrize("engine", ENGINES)
def test_metrics_cover_throughput_batches_latency_lag_dlq_and_model(
    topics: Settings, key_prefix: str, engine: str
) -> None:
    settings = topics
    orders = live_orders(2000, "m")
    # one implausible order: scored, and its findings counted by rule (docs/contract.md)
    orders[7] = orders[7].model_copy(update={"store_category": None, "min_item_price": 10**6})
    produce_orders(settings, orders)
    produce(settings, [(settings.orders_topic, None, b"nope"), (settings.orders_topic, None, b"{")])
    metrics = StreamMetrics()
    reader = TopicReader(settings, settings.predictions_topic)
    features = redis_features(settings, settings.redis_url_value() or "", key_prefix)
    sample = metrics.registry.get_sample_value
    with running_worker(settings, features, LinearModel("3"), metrics, engine=engine):
        reader.read_until(lambda m: len(m) >= len(orders), timeout_s=60)
        topic = {"topic": settings.orders_topic}
        wait_until(lambda: sample("eta_stream_dead_letters_total", topic) == 2, 30)
        lag = {"topic": settings.orders_topic, "partition": "0"}
        # reported every few seconds; Tansu's watermarks can be off, so only its presence counts
        wait_until(lambda: sample("eta_stream_consumer_lag", lag) is not None, 30)
    reader.close()
    assert sample("eta_stream_events_total", topic) == len(orders) + 2
    assert sample("eta_stream_predictions_total") == len(orders)
    assert sample("eta_stream_batch_size_sum") == len(orders) + 2
    assert (sample("eta_stream_batch_size_count") or 0) >= 1
    # live orders: every one acknowledged within a minute of its created_at
    assert sample("eta_stream_end_to_end_latency_seconds_bucket", {"le": "60.0"}) == len(orders)
    assert sample("eta_stream_model_info", {"name": "eta", "version": "3"}) == 1
    assert (sample("eta_stream_feature_events_total", {"outcome": "applied"}) or 0) > 0
    findings = {r: sample("eta_stream_contract_findings_total", {"rule": r}) for r in
                ("missing_attribute", "min_price_above_max", "busy_above_onshift")}  # fmt: skip
    assert findings == {"missing_attribute": 1, "min_price_above_max": 1, "busy_above_onshift": 0}

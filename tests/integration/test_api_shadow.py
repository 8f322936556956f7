"""The HTTP API's shadow (#23.4) on the real broker and Redis: ``ETA_SHADOW_STAGE=staging``
makes ``POST /v1/predictions`` record the challenger's answer as the worker does (a
``ShadowPrediction`` on the shadow topic, with both versions), and the response is the same
bytes with the shadow on and off. The shadow follows its stage when it moves.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import pytest
import redis
from confluent_kafka.admin import AdminClient, ConfigResource

import predictor.api.predict
from predictor.api.wiring import SHADOW_FLUSH_S
from predictor.models.registry import Registry
from stream_features.contract import ShadowPrediction
from stream_features.kafka_clients import admin_config, ensure_topics, topic_config
from stream_features.settings import Settings
from stream_features.stack import free_port
from tests.api_fakes import AppClient
from tests.feature_events import order
from tests.integration.api_helpers import api_client, model_settings, seed_state
from tests.integration.worker_helpers import TopicReader
from tests.integration.worker_models import register_shuffled
from tests.polling import wait_until

pytestmark = pytest.mark.integration


def _shadowed(
    reader: TopicReader, order_ids: set[str], timeout_s: float
) -> dict[str, list[ShadowPrediction]]:
    """The shadow records of ``order_ids`` read by the deadline, by order id."""
    reader.read_until(lambda got: order_ids <= {m.key().decode() for m in got}, timeout_s)
    out: dict[str, list[ShadowPrediction]] = {}
    for m in reader.messages:
        record = ShadowPrediction.model_validate_json(m.value())
        out.setdefault(record.order_id, []).append(record)
    return out


def test_an_http_prediction_is_shadowed_and_its_response_is_unchanged(
    settings: Settings,
    redis_client: redis.Redis,
    key_prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    off = model_settings(settings, tmp_path)  # production: version 1
    on = off.model_copy(update={"shadow_stage": "staging", "model_poll_s": 0.1})
    challenger = register_shuffled(off, tmp_path)  # staging: version 2, a different model
    ensure_topics(on)
    now = datetime.now(UTC)
    seed_state(redis_client, key_prefix, now)
    # one clock for both apps, so that served_at (the only field stamped by the wall clock)
    # cannot tell them apart: every other byte comes from the state, the model and the order
    monkeypatch.setattr(predictor.api.predict, "served_now", lambda: now)
    orders = [order(f"http-{i}", now, store=f"s{i % 6}", market=f"m{i % 2}") for i in range(5)]
    many = b"[" + b",".join(o.model_dump_json().encode() for o in orders) + b"]"
    one = orders[0].model_dump_json().encode()

    def post_all(api: AppClient) -> list[httpx.Response]:
        return [
            api.post("/v1/predictions", content=many),
            api.post("/v1/predictions", content=one),
            api.post("/v1/predictions?explain=true", content=one),
        ]

    with api_client(off, key_prefix) as api:
        answers_off = post_all(api)
    reader = TopicReader(on, on.shadow_topic)
    try:
        with api_client(on, key_prefix) as api:
            answers_on = post_all(api)
            for off_answer, on_answer in zip(answers_off, answers_on, strict=True):
                assert off_answer.status_code == on_answer.status_code == 200, on_answer.text
                assert on_answer.content == off_answer.content  # byte for byte
                assert on_answer.headers["content-type"] == off_answer.headers["content-type"]

            served = {p["order_id"]: p for p in orjson.loads(answers_on[0].content)}
            records = _shadowed(reader, set(served), 30)
            assert set(records) == set(served)
            for order_id, got in records.items():
                # the list, then the single order twice (plain, explained): three records of it
                assert len(got) == (3 if order_id == orders[0].order_id else 1)
                for record in got:
                    assert record.model_name == on.model_name
                    assert (record.champion_version, record.challenger_version) == (
                        "1",
                        challenger,
                    )
                    assert record.challenger_stage == "staging"
                    assert record.mode == "online"  # the API served it, not the stream
                    expected = served[order_id]
                    assert record.champion_predicted_duration_s == expected["predicted_duration_s"]
                    assert (record.store_id, record.market_id) == (
                        expected["store_id"],
                        expected["market_id"],
                    )
            assert any(
                r.challenger_predicted_duration_s != r.champion_predicted_duration_s
                for got in records.values()
                for r in got
            )
            metrics = api.get("/metrics").text
            assert "eta_http_shadow_predictions_total 7.0" in metrics
            assert "eta_http_shadow_failures_total{" not in metrics  # none, for any reason

            # staging moves to version 1: the running API's shadow follows it
            Registry(on.registry_dir).promote(on.model_name, "1", "staging")
            deadline = time.monotonic() + 30
            swapped = None
            i = 0
            while swapped is None and time.monotonic() < deadline:
                probe = order(f"swap-{i}", now, store="s1", market="m1")
                i += 1
                answer = api.post("/v1/predictions", content=probe.model_dump_json())
                assert answer.status_code == 200
                got = _shadowed(reader, {probe.order_id}, 2).get(probe.order_id, [])
                swapped = next((r for r in got if r.challenger_version == "1"), None)
        assert swapped is not None, "the API's shadow never followed staging to version 1"
        assert swapped.champion_predicted_duration_s == swapped.challenger_predicted_duration_s
    finally:
        reader.close()


def test_a_shadow_whose_broker_is_not_there_leaves_the_answers_alone(
    settings: Settings,
    redis_client: redis.Redis,
    key_prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nothing listens at the shadow's broker: the API starts, answers the same bytes, and its
    shutdown gives the undeliverable records ``SHADOW_FLUSH_S`` and no more."""
    off = model_settings(settings, tmp_path)
    register_shuffled(off, tmp_path)
    nowhere = off.model_copy(
        update={"shadow_stage": "staging", "kafka_bootstrap_servers": f"127.0.0.1:{free_port()}"}
    )
    now = datetime.now(UTC)
    seed_state(redis_client, key_prefix, now)
    monkeypatch.setattr(predictor.api.predict, "served_now", lambda: now)
    body = order("nowhere-1", now, store="s1", market="m1").model_dump_json().encode()

    with api_client(off, key_prefix) as api:
        expected = api.post("/v1/predictions", content=body)
    started = time.monotonic()
    with api_client(nowhere, key_prefix) as api:
        got = api.post("/v1/predictions", content=body)
    closed_in_s = time.monotonic() - started

    assert expected.status_code == got.status_code == 200, got.text
    assert got.content == expected.content
    assert closed_in_s < SHADOW_FLUSH_S + 10


def test_the_api_creates_its_shadow_topic_with_its_configs(
    settings: Settings, redis_client: redis.Redis, key_prefix: str, tmp_path: Path
) -> None:
    """``eta serve`` with a shadow and no ``eta up`` before it: the topic appears, created with
    the configs the worker would give it (Tansu describes only those)."""
    off = model_settings(settings, tmp_path)
    register_shuffled(off, tmp_path)
    topic = f"shadow-own-{time.time_ns()}"
    on = off.model_copy(update={"shadow_stage": "staging", "shadow_topic": topic})
    admin = AdminClient(admin_config(on))
    assert topic not in admin.list_topics(timeout=10).topics
    with api_client(on, key_prefix):
        wait_until(
            lambda: topic in admin.list_topics(timeout=10).topics,
            timeout_s=20,
            what=f"the API to create {topic}",
        )
    (described,) = admin.describe_configs([ConfigResource("topic", topic)]).values()
    configs = {name: entry.value for name, entry in described.result().items()}
    assert configs["compression.type"] == topic_config(on, topic)["compression.type"]

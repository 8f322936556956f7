"""The HTTP API against the real Redis and registry: predictions, lookups, readiness, metrics.

The app is the one ``eta serve`` builds from Settings (``build_app``), over the test's own key
prefix and model name; ``test_api_serve.py`` runs the command itself.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest
import redis

from predictor.api.predict import predict_orders
from predictor.api.schemas import StoreEta
from predictor.api.wiring import build_app
from predictor.batch_scoring import run_batch
from predictor.models.registry import Registry
from predictor.serving.latest import LatestPredictions
from predictor.serving.records import OutRecord
from stream_features.contract import DeliveryPrediction
from stream_features.online import get_online_features
from stream_features.settings import Settings
from tests.api_fakes import order_json
from tests.feature_events import order
from tests.integration.api_helpers import api_client, model_settings, seed_state, seeded_profiles
from tests.integration.worker_models import registered_model

pytestmark = pytest.mark.integration


@pytest.fixture()
def served(settings: Settings, tmp_path: Path) -> Settings:
    return model_settings(settings, tmp_path)


def _model(settings: Settings):  # type: ignore[no-untyped-def]  # a fixture helper; its model type is the test's business
    registry = Registry(settings.registry_dir)
    return registry.load(settings.model_name, registry.resolve(settings.model_name, "production"))


def test_one_order_is_scored_on_the_online_row_and_changes_nothing(
    served: Settings, redis_client: redis.Redis, key_prefix: str
) -> None:
    now = datetime.now(UTC)
    seed_state(redis_client, key_prefix, now)
    new = order("new-1", now, store="s1", market="m1")
    state_before = redis_client.hgetall(f"{key_prefix}s:s1")

    with api_client(served, key_prefix) as api:
        response = api.post("/v1/predictions", content=new.model_dump_json())

    assert response.status_code == 200, response.text
    prediction = DeliveryPrediction.model_validate_json(response.content)
    row = get_online_features(redis_client, [new], key_prefix=key_prefix)
    expected = _model(served).predict(row.values)[0]
    assert prediction.mode == "online"
    assert prediction.order_id == "new-1" and prediction.store_id == "s1"
    assert prediction.model_name == served.model_name and prediction.model_version == "1"
    assert prediction.predicted_duration_s == pytest.approx(expected, abs=1e-9)
    assert prediction.predicted_delivery_at == new.created_at + timedelta(seconds=expected)
    assert prediction.feature_freshness_s == pytest.approx(row.freshness_s[0])
    assert row.values[0, row.names.index("store__orders_created__60m")] > 0  # real state read
    assert redis_client.hgetall(f"{key_prefix}s:s1") == state_before


def test_a_list_is_answered_in_order_by_one_model_version(
    served: Settings, redis_client: redis.Redis, key_prefix: str
) -> None:
    now = datetime.now(UTC)
    seed_state(redis_client, key_prefix, now)
    orders = [
        order(f"list-{i}", now - timedelta(seconds=i), store=f"s{i % 7}", market=f"m{i % 2}")
        for i in range(40)
    ]
    body = orjson.dumps([orjson.loads(o.model_dump_json()) for o in orders])

    with api_client(served, key_prefix) as api:
        response = api.post("/v1/predictions", content=body)

    assert response.status_code == 200
    answers = [DeliveryPrediction.model_validate(p) for p in response.json()]
    assert [a.order_id for a in answers] == [o.order_id for o in orders]
    assert {a.model_version for a in answers} == {"1"}
    rows = get_online_features(redis_client, orders, key_prefix=key_prefix)
    expected = _model(served).predict(rows.values)
    np.testing.assert_allclose([a.predicted_duration_s for a in answers], expected, atol=1e-9)
    assert len({a.predicted_duration_s for a in answers}) > 1  # the rows differ


def test_an_explained_prediction_adds_up_to_the_eta(
    served: Settings, redis_client: redis.Redis, key_prefix: str
) -> None:
    now = datetime.now(UTC)
    seed_state(redis_client, key_prefix, now)
    orders = [order(f"why-{i}", now, store=f"s{i}", market=f"m{i % 2}") for i in range(3)]
    body = orjson.dumps([orjson.loads(o.model_dump_json()) for o in orders])

    with api_client(served, key_prefix) as api:
        plain = api.post("/v1/predictions", content=body)
        explained = api.post("/v1/predictions?explain=true", content=body)

    assert plain.status_code == 200 and explained.status_code == 200, explained.text
    model = _model(served)
    for without, with_ in zip(plain.json(), explained.json(), strict=True):
        answer = DeliveryPrediction.model_validate(with_)
        assert answer.explanation is not None and "explanation" not in without
        why = answer.explanation
        assert list(why.contributions_s) == model.feature_names
        total = why.bias_s + sum(why.contributions_s.values())
        assert abs(total - answer.predicted_duration_s) <= 1e-6, (total, answer)
        assert answer.predicted_duration_p10_s is not None
        assert {k: v for k, v in with_.items() if k not in ("explanation", "served_at")} == {
            k: v for k, v in without.items() if k != "served_at"
        }  # the same answer, reasons added
        biggest = sorted(why.contributions_s.items(), key=lambda kv: -abs(kv[1]))[:5]
        assert len(why.top) == 5
        for text, (name, seconds) in zip(why.top, biggest, strict=True):
            assert text.startswith(f"{seconds:+.0f} s from {name} = "), (text, name)


def test_the_streamed_prediction_is_returned_byte_for_byte(
    served: Settings, redis_client: redis.Redis, key_prefix: str
) -> None:
    streamed = b'{"schema_version":1,"type":"DeliveryPrediction","order_id":"o-9"}'

    with api_client(served, key_prefix) as api:
        before = api.get("/v1/predictions/o-9")
        LatestPredictions(redis_client, key_prefix, ttl_s=60).store([OutRecord(b"o-9", streamed)])
        after = api.get("/v1/predictions/o-9")
        other = api.get("/v1/predictions/o-10")

    assert before.status_code == 404
    assert "no streamed prediction for order 'o-9'" in before.json()["detail"]
    assert "off by default" in before.json()["detail"]  # what a new user hits first
    assert "ETA_PREDICTION_TTL_S=3600" in before.json()["detail"]
    assert after.status_code == 200 and after.content == streamed
    assert after.headers["content-type"] == "application/json"
    assert other.status_code == 404


def test_store_etas_come_from_the_current_batch_run(
    served: Settings, redis_client: redis.Redis, key_prefix: str, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    orders = seed_state(redis_client, key_prefix, now)

    with api_client(served, key_prefix) as api:
        before = api.get("/v1/stores/s1/eta")
        run = run_batch(
            redis_client,
            seeded_profiles(orders, now),
            _model(served),
            as_of=now,
            slots=3,
            out_dir=tmp_path / "batch",
            key_prefix=key_prefix,
        )
        found = api.get("/v1/stores/s1/eta")
        unknown = api.get("/v1/stores/s-unknown/eta")

    assert before.status_code == 404 and "no batch prediction run" in before.json()["detail"]
    assert found.status_code == 200
    eta = StoreEta.model_validate_json(found.content)
    assert eta.store_id == "s1" and eta.batch_version == run.version
    assert [p.created_at for p in eta.predictions] == [now + timedelta(hours=k) for k in range(3)]
    assert {p.mode for p in eta.predictions} == {"batch"}
    assert unknown.status_code == 404
    assert f"not in batch run {run.version}" in unknown.json()["detail"]


def test_not_ready_until_a_model_is_promoted_then_follows_the_stage(
    settings: Settings, redis_client: redis.Redis, key_prefix: str, tmp_path: Path
) -> None:
    trained = registered_model(settings, tmp_path)  # registered under a name we swap in below
    registry = Registry(trained.registry_dir)
    name = trained.model_name
    empty = settings.model_copy(
        update={"model_name": name, "serve_stage": "staging", "scoring": "lightgbm"}
    )
    new = order("ready-1", datetime.now(UTC))

    with api_client(empty, key_prefix) as api:
        not_ready = api.get("/readyz")
        refused = api.post("/v1/predictions", content=new.model_dump_json())
        registry.promote(name, "1", "staging")
        deadline = time.monotonic() + 20
        while api.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        ready = api.get("/readyz")
        scored = api.post("/v1/predictions", content=new.model_dump_json())
        metrics = api.get("/metrics").text

    assert not_ready.status_code == 503
    assert not_ready.json()["reasons"] == [f"no model at {name}@staging yet"]
    assert refused.status_code == 503
    assert ready.status_code == 200, ready.text
    assert ready.json() == {
        "status": "ready",
        "model_name": name,
        "model_version": "1",
        "backend": "lightgbm",
    }
    assert scored.status_code == 200
    assert f'eta_http_model_info{{name="{name}",version="1"}} 1.0' in metrics
    assert 'route="/v1/predictions",status="503"' in metrics
    assert "eta_http_predictions_total 1.0" in metrics


def test_a_bad_order_in_a_list_names_its_index(served: Settings, key_prefix: str) -> None:
    orders = [order_json(f"o{i}") for i in range(5)]
    orders[2]["subtotal"] = -1

    with api_client(served, key_prefix) as api:
        response = api.post("/v1/predictions", json=orders)

    assert response.status_code == 422
    (problem,) = response.json()["detail"]
    assert problem["loc"] == ["body", 2, "subtotal"]
    assert problem["msg"] == "Input should be greater than or equal to 0"


def test_an_implausible_order_is_scored_and_its_findings_counted(
    served: Settings, key_prefix: str
) -> None:
    odd = {**order_json("odd"), "min_item_price": 4000, "max_item_price": 3500}
    odd["store_category"] = None

    with api_client(served, key_prefix) as api:
        response = api.post("/v1/predictions", json=[odd, order_json("plain")])
        metrics = api.get("/metrics").text

    assert response.status_code == 200, response.text
    assert [p["order_id"] for p in response.json()] == ["odd", "plain"]
    assert 'eta_http_contract_findings_total{rule="min_price_above_max"} 1.0' in metrics
    assert 'eta_http_contract_findings_total{rule="item_price_above_subtotal"} 1.0' in metrics
    assert 'eta_http_contract_findings_total{rule="missing_attribute"} 1.0' in metrics
    assert 'eta_http_contract_findings_total{rule="zero_estimate"} 0.0' in metrics


def test_concurrent_requests_are_scored_together_with_the_same_answers(
    served: Settings, redis_client: redis.Redis, key_prefix: str
) -> None:
    now = datetime.now(UTC)
    seed_state(redis_client, key_prefix, now)
    orders = [order(f"c-{i}", now, store=f"s{i % 6}", market=f"m{i % 2}") for i in range(20)]
    # all 20 at once: under ETA_API_MAX_INFLIGHT's default (8) the rest would be shed with 503
    app = build_app(served.model_copy(update={"api_max_inflight": len(orders)}), key_prefix)

    async def together() -> tuple[list[httpx.Response], str]:
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://api") as client,
        ):
            answers = await asyncio.gather(
                *(client.post("/v1/predictions", content=o.model_dump_json()) for o in orders)
            )
            return list(answers), (await client.get("/metrics")).text

    answers, metrics = asyncio.run(together())
    model = _model(served)
    alone = predict_orders(redis_client, orders, model, key_prefix=key_prefix)

    assert [a.status_code for a in answers] == [200] * 20
    assert [_without_served_at(a.content) for a in answers] == [
        _without_served_at(b) for b in alone
    ]
    assert "eta_http_scoring_batch_orders_count 1.0" in metrics  # one read, one predict
    assert "eta_http_scoring_batch_orders_sum 20.0" in metrics


def _without_served_at(raw: bytes) -> dict[str, object]:
    body = orjson.loads(raw)
    body.pop("served_at")
    return dict(body)

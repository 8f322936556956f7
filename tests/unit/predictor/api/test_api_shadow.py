"""The HTTP API's shadow without services: what it hands the worker's ``ShadowStage``, and that
it is optional (no stage, no broker: no shadow) and never touches an answer."""

from __future__ import annotations

import logging
from typing import Any, cast

import pytest

from predictor.api.metrics import ApiMetrics
from predictor.api.predict import _hand_to_shadow
from predictor.api.wiring import api_shadow
from predictor.models.handle import ModelHandle
from predictor.models.shadow import ShadowScorer
from predictor.serving.encoding import answers
from predictor.serving.pipeline import BatchResult
from predictor.serving.shadow_stage import ShadowStage
from stream_features.contract import ShadowPrediction
from stream_features.settings import Settings
from stream_features.vectors import FeatureRows
from tests.serving_fakes import T0, LinearModel, MemoryFeatures, order
from tests.unit.predictor.serving.test_shadow_stage import ListSink, StageOf


def online_answers(n: int) -> tuple[FeatureRows, list[bytes | None], LinearModel]:
    """Rows for ``n`` orders and the API's answers for them (the third one unusable: None)."""
    champion = LinearModel("1")
    rows = MemoryFeatures().update_and_read([order(i) for i in range(n)])
    assert rows is not None
    durations = champion.predict(rows.values).tolist()
    values: list[bytes | None] = list(
        answers(
            rows.orders,
            durations,
            rows.freshness_s.tolist(),
            model_name=champion.name,
            model_version=champion.version,
            served_at=T0,
            mode="online",
        )
    )
    values[2] = None
    return rows, values, champion


def test_the_served_answers_reach_the_worker_shadow_stage_as_a_batch_of_its_own() -> None:
    rows, values, champion = online_answers(5)
    sink = ListSink()
    metrics = ApiMetrics(lambda: None)
    stage = ShadowStage(
        ShadowScorer(cast(ModelHandle, StageOf(LinearModel("2")))),
        sink,
        scored=metrics.shadow_predictions,
        failures=metrics.shadow_failures,
    )
    before = list(values)

    _hand_to_shadow(stage, rows, values, champion)
    stage.close()

    assert values == before  # the answers are the caller's, untouched
    shadows = [ShadowPrediction.model_validate_json(v) for _k, v in sink.sent]
    assert [s.order_id for s in shadows] == ["o0", "o1", "o3", "o4"]  # not the unusable one
    assert {(s.champion_version, s.challenger_version) for s in shadows} == {("1", "2")}
    assert {s.mode for s in shadows} == {"online"}  # the API served them, not the stream
    durations = champion.predict(rows.values).tolist()
    assert [s.champion_predicted_duration_s for s in shadows] == [
        durations[i] for i in (0, 1, 3, 4)
    ]
    assert metrics.registry.get_sample_value("eta_http_shadow_predictions_total") == 4


def test_a_shadow_that_refuses_the_batch_is_logged_and_the_answers_stand(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rows, values, champion = online_answers(3)

    def broken(_rows: FeatureRows, _result: BatchResult) -> None:
        raise RuntimeError("cannot schedule new futures after shutdown")

    with caplog.at_level(logging.WARNING, logger="etastream.api"):
        _hand_to_shadow(broken, rows, values, champion)

    assert "the shadow did not take a batch" in caplog.text


def test_no_shadow_without_a_stage_nor_without_a_broker(caplog: pytest.LogCaptureFixture) -> None:
    metrics = ApiMetrics(lambda: None)
    client: Any = object()  # never reached: neither case builds a handle
    assert api_shadow(Settings(kafka_bootstrap_servers="localhost:1"), client, metrics) is None

    with caplog.at_level(logging.WARNING, logger="etastream.api"):
        shadow = api_shadow(
            Settings(shadow_stage="staging", kafka_bootstrap_servers=None), client, metrics
        )

    assert shadow is None
    assert "ETA_KAFKA_BOOTSTRAP_SERVERS is not set" in caplog.text

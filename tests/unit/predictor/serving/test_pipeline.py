"""The streaming core over in-memory fakes: good records predicted, bad ones dead-lettered."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson
import pytest

from predictor.engines.errors import EngineConfigError
from predictor.engines.options import pipeline_config
from predictor.serving.dlq import decode_dead_letter
from predictor.serving.pipeline import BatchResult, PipelineConfig, process_batch
from predictor.serving.records import RawRecord
from stream_features.contract import DeliveryPrediction
from stream_features.settings import Settings
from tests.serving_fakes import T0, LinearModel, MemoryFeatures, dasher_event, ms, order_bytes

NOW = ms(T0) + 5_000
CONFIG = PipelineConfig(max_message_bytes=1_000_000, max_future_skew_s=3600)


def records(values: Sequence[bytes | None], topic: str = "orders") -> list[RawRecord]:
    return [RawRecord(v, topic, 0, i, b"s1") for i, v in enumerate(values)]


def run(
    values: Sequence[bytes | None],
    model: LinearModel | None = None,
    features: MemoryFeatures | None = None,
    config: PipelineConfig = CONFIG,
) -> BatchResult:
    return process_batch(
        records(values),
        features or MemoryFeatures(),
        model or LinearModel(),
        now_ms=NOW,
        config=config,
    )


def predictions(result: BatchResult) -> list[DeliveryPrediction]:
    return [DeliveryPrediction.model_validate_json(r.value) for r in result.predictions]


def test_every_order_gets_one_prediction_with_the_model_that_scored_it() -> None:
    model = LinearModel(version="7")
    result = run([order_bytes(i) for i in range(5)], model)
    preds = predictions(result)
    assert [p.order_id for p in preds] == [f"o{i}" for i in range(5)]
    assert [r.key for r in result.predictions] == [f"o{i}".encode() for i in range(5)]
    assert {(p.model_name, p.model_version, p.mode) for p in preds} == {("eta", "7", "streaming")}
    # each order sees the orders before it in the batch, not itself: 600 s + 60 s per order
    assert [p.predicted_duration_s for p in preds] == [600.0 + 60 * i for i in range(5)]
    for p in preds:
        assert p.predicted_delivery_at == p.created_at + timedelta(seconds=p.predicted_duration_s)
        assert p.served_at == datetime.fromtimestamp(NOW / 1000, UTC)
    assert preds[0].feature_freshness_s is None and preds[1].feature_freshness_s == 1.5
    assert result.created_ms == [ms(p.created_at) for p in preds]
    assert result.dead_letters == [] and result.orders == 5


def test_one_feature_call_and_one_predict_per_batch() -> None:
    features, model = MemoryFeatures(), LinearModel()
    run([order_bytes(i) for i in range(3)] + [dasher_event()], model, features)
    assert features.calls == [4]
    assert model.calls == [3]


def test_events_without_orders_update_features_and_predict_nothing() -> None:
    features, model = MemoryFeatures(), LinearModel()
    result = run([dasher_event()], model, features)
    assert features.calls == [1] and model.calls == [] and result.predictions == []


def test_an_empty_batch_touches_nothing() -> None:
    features = MemoryFeatures()
    assert run([], features=features).predictions == [] and features.calls == []


def test_the_model_in_use_is_swapped_between_batches() -> None:
    features = MemoryFeatures()
    first = run([order_bytes(1)], LinearModel("1"), features)
    second = run([order_bytes(2)], LinearModel("2"), features)
    assert predictions(first)[0].model_version == "1"
    assert predictions(second)[0].model_version == "2"
    assert (second.model_name, second.model_version) == ("eta", "2")


def test_the_feature_vector_rides_along_when_asked() -> None:
    config = PipelineConfig(include_features=True)
    preds = predictions(run([order_bytes(i) for i in range(3)], config=config))
    assert [p.features["store__orders_created__10m"] for p in preds if p.features] == [0, 1, 2]
    # NaN (missing) inputs are left out: JSON has no NaN
    assert preds[0].features is not None and "market__busy_ratio" not in preds[0].features
    assert predictions(run([order_bytes(1)]))[0].features is None


def test_the_feature_vector_can_be_cut_to_named_inputs() -> None:
    names = ("store__orders_created__10m", "market__busy_ratio")
    config = PipelineConfig(include_features=True, feature_names=names)
    preds = predictions(run([order_bytes(i) for i in range(3)], config=config))
    assert [p.features for p in preds] == [
        {"store__orders_created__10m": float(i)} for i in range(3)
    ]


class _RangedModel(LinearModel):
    def predict_range(self, values: Any, /) -> tuple[Any, Any]:
        point = self.predict(values)
        return point, np.stack([point - 60.0, point + 120.0])


@pytest.mark.parametrize("with_range", [True, False])
def test_the_range_rides_along_unless_turned_off(with_range: bool) -> None:
    config = PipelineConfig(with_range=with_range)
    [pred] = predictions(run([order_bytes(0)], _RangedModel(), config=config))
    assert pred.predicted_duration_s == 600.0
    if with_range:
        assert (pred.predicted_duration_p10_s, pred.predicted_duration_p90_s) == (540.0, 720.0)
    else:
        assert pred.predicted_duration_p10_s is None and pred.predicted_duration_p90_s is None


def test_an_unknown_feature_name_stops_the_worker_at_start() -> None:
    settings = Settings(stream_feature_names=("store__orders_created__10m", "nope"))
    with pytest.raises(EngineConfigError, match="nope"):
        pipeline_config(settings)


def test_replayed_orders_are_predicted_again_without_counting_twice() -> None:
    features = MemoryFeatures()
    run([order_bytes(1), order_bytes(2)], features=features)
    again = run([order_bytes(1), order_bytes(2)], features=features)
    assert len(again.predictions) == 2
    assert again.feature_stats["duplicates"] == 2
    assert features.store_orders["s1"] == 2


def test_unusable_model_outputs_are_dead_lettered_and_negatives_clipped() -> None:
    model = LinearModel()
    model.override = {0: float("nan"), 1: -30.0, 2: 1e12}
    result = run([order_bytes(i) for i in range(4)], model)
    assert [p.order_id for p in predictions(result)] == ["o1", "o3"]
    assert predictions(result)[0].predicted_duration_s == 0.0
    letters = [decode_dead_letter(r.value) for r in result.dead_letters]
    assert [letter.source_offset for letter in letters] == [0, 2]
    assert all("unusable duration" in letter.reason for letter in letters)


def test_feature_source_errors_reach_the_engine_with_nothing_produced() -> None:
    features = MemoryFeatures()
    features.failures_left = 1
    with pytest.raises(ConnectionError):
        run([order_bytes(1)], features=features)
    assert len(run([order_bytes(1)], features=features).predictions) == 1


def test_a_broken_feature_source_is_not_silently_trusted() -> None:
    class Short(MemoryFeatures):
        def update_and_read(self, events):  # type: ignore[no-untyped-def]  # overrides the fake's method as written there
            rows = super().update_and_read(events)
            return type(rows)(rows.names, rows.values[:0], rows.freshness_s[:0], [], {})

    with pytest.raises(RuntimeError, match="0 rows for 2 orders"):
        run([order_bytes(1), order_bytes(2)], features=Short())


def test_prediction_bytes_are_valid_contract_json() -> None:
    raw = run([order_bytes(1, at=T0 + timedelta(microseconds=123_456))]).predictions[0].value
    data = orjson.loads(raw)
    assert data["type"] == "DeliveryPrediction" and data["schema_version"] == 1
    assert data["created_at"].endswith("Z")


def test_the_steps_apart_give_what_process_batch_gives() -> None:
    """Engines that overlap the feature round trip call decode, features, score themselves."""
    from predictor.serving.pipeline import decode_batch, score_batch

    values = [order_bytes(i) for i in range(3)] + [b"junk", dasher_event()]
    decoded = decode_batch(records(values), now_ms=NOW, config=CONFIG)
    assert len(decoded.events) == 4 and len(decoded.order_sources) == 3
    assert len(decoded.result.dead_letters) == 1
    rows = MemoryFeatures().update_and_read(decoded.events)
    apart = score_batch(decoded, rows, LinearModel("5"), now_ms=NOW, config=CONFIG)
    whole = run(values, LinearModel("5"))
    assert [r.value for r in apart.predictions] == [r.value for r in whole.predictions]
    assert [r.value for r in apart.dead_letters] == [r.value for r in whole.dead_letters]


def test_a_batch_of_rejects_only_still_names_the_model() -> None:
    from predictor.serving.pipeline import decode_batch, score_batch

    decoded = decode_batch(records([b"junk"]), now_ms=NOW, config=CONFIG)
    result = score_batch(decoded, None, LinearModel("9"), now_ms=NOW, config=CONFIG)
    assert (result.model_version, len(result.dead_letters), result.predictions) == ("9", 1, [])


def test_the_worker_decodes_into_structs_and_finds_the_orders_by_type() -> None:
    from predictor.serving.pipeline import decode_batch
    from stream_features.wire_decode import DasherEventWire, OrderCreatedWire

    decoded = decode_batch(
        records([order_bytes(1), dasher_event(), order_bytes(2)]), now_ms=NOW, config=CONFIG
    )
    assert [type(e).__mro__[1] for e in decoded.events] == [
        OrderCreatedWire,
        DasherEventWire,
        OrderCreatedWire,
    ]
    assert [r.offset() for r in decoded.order_sources] == [0, 2]


def test_findings_keep_the_order_and_are_counted_by_rule_unless_strict() -> None:
    odd = orjson.loads(order_bytes(1, order_id="odd"))
    odd.pop("store_category")
    odd["min_item_price"], odd["store_id"] = 10**6, 42
    values = [orjson.dumps(odd), order_bytes(2, order_id="plain")]

    lenient = run(values)
    strict = run(values, config=PipelineConfig(contract_strict=True))

    assert [p.order_id for p in predictions(lenient)] == ["odd", "plain"]
    assert predictions(lenient)[0].store_id == "42"
    assert lenient.dead_letters == []
    assert lenient.findings_by_rule == {"missing_attribute": 1, "min_price_above_max": 1}
    assert [p.order_id for p in predictions(strict)] == ["plain"]
    (letter,) = [decode_dead_letter(r.value) for r in strict.dead_letters]
    assert letter.field == "store_category"
    assert letter.reason.endswith(
        "(finding missing_attribute, rejected: ETA_CONTRACT_STRICT is set)"
    )
    assert strict.findings_by_rule == {}


def test_a_model_that_cannot_explain_is_said_once_per_version(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from prometheus_client import CollectorRegistry

    from predictor.serving.metrics import StreamMetrics

    metrics = StreamMetrics(CollectorRegistry())
    for version in ("1", "1", "2", "2"):
        result = BatchResult(model_name="eta", model_version=version, unexplained="log target")
        metrics.observe_batch(result, 0.01)
    said = [r for r in caplog.records if "cannot explain" in r.getMessage()]
    assert [r.model for r in said] == ["eta:1", "eta:2"]  # type: ignore[attr-defined]  # the log's extra


def test_reasons_on_the_stream_are_a_setting_off_by_default() -> None:
    assert pipeline_config(Settings()).explain is False
    assert pipeline_config(Settings(stream_explain=True)).explain is True

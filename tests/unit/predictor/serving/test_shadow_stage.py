"""The worker's shadow over in-memory fakes: records for every served order, nothing served."""

from __future__ import annotations

import threading
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pytest
from prometheus_client import CollectorRegistry

from predictor.models.handle import ModelHandle
from predictor.models.shadow import ShadowScorer
from predictor.serving.metrics import StreamMetrics
from predictor.serving.pipeline import BatchResult, PipelineConfig, decode_batch, score_batch
from predictor.serving.records import RawRecord
from predictor.serving.shadow_stage import ShadowStage
from producers.tail import describe
from stream_features.contract import ShadowPrediction, encode
from stream_features.vectors import FeatureRows
from tests.serving_fakes import T0, LinearModel, MemoryFeatures, ms, order_bytes

NOW = ms(T0) + 5_000
CONFIG = PipelineConfig()


class StageOf:
    """A ``ModelHandle`` stand-in: the model at a stage, or None, swappable by the test."""

    def __init__(self, model: Any | None, stage: str = "staging") -> None:
        self.model, self.name, self.stage = model, "eta", stage

    def peek(self) -> Any | None:
        return self.model


class ListSink:
    def __init__(self, room: int = 1_000_000) -> None:
        self.sent: list[tuple[bytes, bytes]] = []
        self.room = room

    def send(self, key: bytes, value: bytes) -> bool:
        if len(self.sent) >= self.room:
            return False
        self.sent.append((key, value))
        return True

    def flush(self, timeout_s: float) -> None:
        pass


class Failing:
    name, version = "eta", "9"

    def predict(self, values: npt.NDArray[np.float64], /) -> npt.NDArray[np.float64]:
        raise RuntimeError("challenger exploded")


class Blocking(LinearModel):
    def __init__(self) -> None:
        super().__init__(version="3")
        self.release = threading.Event()

    def predict(self, values: npt.NDArray[np.float64], /) -> npt.NDArray[np.float64]:
        assert self.release.wait(10)
        return super().predict(values)


def batch(n: int = 6, first: int = 0) -> tuple[FeatureRows | None, BatchResult]:
    records = [RawRecord(order_bytes(i), "orders", 0, i, b"s1") for i in range(first, first + n)]
    decoded = decode_batch(records, now_ms=NOW, config=CONFIG)
    rows = MemoryFeatures().update_and_read(decoded.events)
    return rows, score_batch(decoded, rows, LinearModel("1"), now_ms=NOW, config=CONFIG)


def stage_with(
    model: Any | None, sink: ListSink | None = None
) -> tuple[ShadowStage, StreamMetrics]:
    metrics = StreamMetrics(CollectorRegistry())
    scorer = ShadowScorer(cast(ModelHandle, StageOf(model)))
    stage = ShadowStage(
        scorer,
        sink or ListSink(),
        scored=metrics.shadow_predictions,
        failures=metrics.shadow_failures,
    )
    return stage, metrics


def count(metrics: StreamMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_every_served_order_gets_a_shadow_record_with_both_predictions() -> None:
    sink = ListSink()
    stage, metrics = stage_with(LinearModel("2"), sink)
    rows, result = batch()
    challenger = LinearModel("2")
    challenger_col = challenger.col
    assert rows is not None

    assert stage.score(rows, result) == 6

    shadows = [ShadowPrediction.model_validate_json(v) for _k, v in sink.sent]
    assert [k for k, _v in sink.sent] == [r.key for r in result.predictions]
    assert [s.order_id for s in shadows] == [f"o{i}" for i in range(6)]
    assert {(s.model_name, s.champion_version, s.challenger_version) for s in shadows} == {
        ("eta", "1", "2")
    }
    expected = 600.0 + 60.0 * rows.values[:, challenger_col]
    assert [s.challenger_predicted_duration_s for s in shadows] == expected.tolist()
    assert [s.champion_predicted_duration_s for s in shadows] == expected.tolist()
    assert {s.challenger_stage for s in shadows} == {"staging"}
    assert {s.mode for s in shadows} == {"streaming"}
    assert count(metrics, "eta_stream_shadow_predictions_total") == 6
    # the fast encoder writes what the contract's encoder writes, and eta tail reads it
    assert [encode(s) for s in shadows] == [v for _k, v in sink.sent]
    shown, problem = describe(sink.sent[0][1])
    assert problem is None and shown is not None and shown["type"] == "ShadowPrediction"


def test_primary_predictions_are_byte_identical_with_the_shadow_on_and_off() -> None:
    _rows, off = batch(50)
    rows, on = batch(50)
    stage, _metrics = stage_with(LinearModel("2"))
    before = [(r.key, r.value) for r in on.predictions]

    stage(rows, on)
    stage.close()

    assert [(r.key, r.value) for r in on.predictions] == before
    assert [(r.key, r.value) for r in on.predictions] == [(r.key, r.value) for r in off.predictions]
    assert on.created_ms == off.created_ms


@pytest.mark.parametrize(("model", "reason"), [(None, "missing"), (Failing(), "error")])
def test_a_missing_or_failing_challenger_is_counted_and_never_raises(
    model: Any | None, reason: str
) -> None:
    sink = ListSink()
    stage, metrics = stage_with(model, sink)
    rows, result = batch()
    before = [r.value for r in result.predictions]

    stage(rows, result)
    stage.close()

    assert sink.sent == []
    assert count(metrics, "eta_stream_shadow_failures_total", reason=reason) == 1
    assert [r.value for r in result.predictions] == before


def test_a_busy_shadow_skips_batches_instead_of_holding_the_worker() -> None:
    model = Blocking()
    stage, metrics = stage_with(model)
    for first in range(0, 60, 6):  # 10 batches; 4 at most are in the shadow's hands
        rows, result = batch(6, first)
        stage(rows, result)  # returns at once though the challenger is stuck
    assert count(metrics, "eta_stream_shadow_failures_total", reason="busy") == 6
    model.release.set()
    stage.close()
    assert count(metrics, "eta_stream_shadow_predictions_total") == 4 * 6


def test_a_full_sink_drops_records_at_most_once() -> None:
    stage, metrics = stage_with(LinearModel("2"), ListSink(room=4))
    rows, result = batch()
    assert rows is not None
    assert stage.score(rows, result) == 4
    assert count(metrics, "eta_stream_shadow_failures_total", reason="dropped") == 2


def test_the_shadow_follows_its_stage_between_batches() -> None:
    sink = ListSink()
    stage, _metrics = stage_with(LinearModel("2"), sink)
    rows, result = batch()
    assert rows is not None
    stage.score(rows, result)
    cast(StageOf, stage.scorer.handle).model = LinearModel("3")
    stage.score(rows, result)
    versions = [ShadowPrediction.model_validate_json(v).challenger_version for _k, v in sink.sent]
    assert versions == ["2"] * 6 + ["3"] * 6

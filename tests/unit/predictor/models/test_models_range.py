"""The ETA range: its stated coverage holds on a simulated history the model never saw, and
the reasons behind an ETA add up to it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from predictor.errors import ExplainUnavailable
from predictor.models.artifact import load_artifact
from predictor.models.dataset import LABEL, split_by_time
from predictor.models.quantiles import range_metrics
from predictor.models.training import TrainConfig
from predictor.models.workflow import train_to_artifact
from predictor.serving.explain import explanations
from producers.simulator import Marketplace
from stream_features.definitions import feature_names
from stream_features.point_in_time import build_training_set
from tests.unit._training_data import SMALL, rows, small_split

BAND = (0.77, 0.83)
"""80% of actual durations inside p10..p90, ±3 points (issue #18)."""


@pytest.mark.slow
def test_coverage_holds_on_a_held_out_simulated_history(tmp_path: Path) -> None:
    """Nine days of a simulated marketplace: the model is trained (and its range calibrated)
    on the first seven, and scored on the last two, which no part of training saw."""
    end = datetime(2026, 3, 1, tzinfo=UTC)
    cut = end - timedelta(days=2)
    frame = build_training_set(list(Marketplace(None, 0).events(end - timedelta(days=9), end)))
    before = frame.filter(pl.col("created_at") < cut)
    after = frame.filter((pl.col("created_at") >= cut) & (pl.col(LABEL) > 0))
    split = split_by_time(before, feature_names(), 0.2)
    config = TrainConfig(num_threads=2)
    outcome = train_to_artifact(
        split, tmp_path / "a", name="eta", training_set="simulated", config=config
    )
    model = load_artifact(tmp_path / "a")
    x = after.select(feature_names()).to_numpy().astype(np.float64)
    y = after[LABEL].to_numpy().astype(np.float64)

    point, bounds = model.predict_range(x)

    assert bounds is not None and outcome.range is not None
    held_out = range_metrics(y, bounds[0], bounds[1])
    validation = outcome.range.validation["conformal"]
    assert BAND[0] <= validation["coverage"] <= BAND[1], validation
    assert BAND[0] <= held_out["coverage"] <= BAND[1], held_out
    assert held_out["rows"] > 20_000
    assert ((bounds[0] <= point) & (point <= bounds[1])).all()
    assert model.metadata["range"]["validation"]["conformal"] == validation


def test_contributions_add_up_to_the_prediction(tmp_path: Path) -> None:
    train_to_artifact(small_split(), tmp_path / "a", name="eta", training_set="x", config=SMALL)
    model = load_artifact(tmp_path / "a")
    x = rows(100)
    x[::9, 4] = np.nan

    reasons = explanations(model, x)
    predicted = model.predict(x)

    for why, eta, values in zip(reasons, predicted, x, strict=True):
        total = why["bias_s"] + sum(why["contributions_s"].values())
        assert eta == 0 or abs(total - eta) <= 1e-6  # (an ETA clipped at 0 is the exception)
        assert len(why["top"]) == 5
        largest = max(why["contributions_s"].items(), key=lambda kv: abs(kv[1]))
        assert why["top"][0].startswith(f"{largest[1]:+.0f} s from {largest[0]} = ")
        assert len(why["contributions_s"]) == len(values)


def test_a_log_target_model_refuses_to_explain(tmp_path: Path) -> None:
    config = TrainConfig(objective="log_l2", num_boost_round=30, num_threads=1)
    train_to_artifact(
        small_split(), tmp_path / "a", name="eta", training_set="x", config=config, force=True
    )

    with pytest.raises(ExplainUnavailable, match="not in seconds"):
        explanations(load_artifact(tmp_path / "a"), rows(3))


def test_the_stream_explains_each_prediction_when_asked(tmp_path: Path) -> None:
    """``ETA_STREAM_EXPLAIN``: each streamed prediction carries the reasons the API gives for
    the same row, adding up to its ETA; off by default."""
    from predictor.serving.pipeline import PipelineConfig, process_batch
    from stream_features.contract import DeliveryPrediction
    from tests.serving_fakes import MemoryFeatures, order_bytes
    from tests.unit.predictor.serving.test_pipeline import NOW, records

    train_to_artifact(small_split(), tmp_path / "a", name="eta", training_set="x", config=SMALL)
    model = load_artifact(tmp_path / "a")
    batch = records([order_bytes(i) for i in range(20)])

    plain = process_batch(batch, MemoryFeatures(), model, now_ms=NOW, config=PipelineConfig())
    told = process_batch(
        batch, MemoryFeatures(), model, now_ms=NOW, config=PipelineConfig(explain=True)
    )

    assert told.unexplained is None and len(told.predictions) == 20
    for bare, out in zip(plain.predictions, told.predictions, strict=True):
        without = DeliveryPrediction.model_validate_json(bare.value)
        pred = DeliveryPrediction.model_validate_json(out.value)
        assert without.explanation is None and pred.explanation is not None
        why = pred.explanation
        total = why.bias_s + sum(why.contributions_s.values())
        assert pred.predicted_duration_s == 0 or abs(total - pred.predicted_duration_s) <= 1e-6
        assert len(why.top) == 5


def test_a_stream_asked_to_explain_a_model_that_cannot_still_predicts(tmp_path: Path) -> None:
    from predictor.serving.pipeline import PipelineConfig, process_batch
    from stream_features.contract import DeliveryPrediction
    from tests.serving_fakes import MemoryFeatures, order_bytes
    from tests.unit.predictor.serving.test_pipeline import NOW, records

    config = TrainConfig(objective="log_l2", num_boost_round=30, num_threads=1)
    train_to_artifact(
        small_split(), tmp_path / "a", name="eta", training_set="x", config=config, force=True
    )
    model = load_artifact(tmp_path / "a")
    result = process_batch(
        records([order_bytes(i) for i in range(3)]),
        MemoryFeatures(),
        model,
        now_ms=NOW,
        config=PipelineConfig(explain=True),
    )

    assert result.unexplained is not None and "not in seconds" in result.unexplained
    assert len(result.predictions) == 3 and not result.dead_letters
    assert all(
        DeliveryPrediction.model_validate_json(p.value).explanation is None
        for p in result.predictions
    )

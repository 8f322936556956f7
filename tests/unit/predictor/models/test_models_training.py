"""Training: the time split, the baselines, and refusing a model that does not beat them."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from predictor.errors import ModelNotBetterError, TrainingSetError
from predictor.models.dataset import load_training_set, split_by_time
from predictor.models.search import SEARCH_OBJECTIVES, SEARCH_TREES
from predictor.models.synthetic import LABEL, synthetic_training_set
from predictor.models.training import TrainConfig, train_model
from predictor.models.workflow import feature_dtypes, load_split, train_to_artifact
from stream_features.definitions import feature_names
from tests.unit._training_data import SMALL, small_split


def test_model_beats_both_baselines_on_generated_data() -> None:
    result = train_model(small_split(), feature_dtypes(), SMALL)

    model, store, overall = (result.metrics[k] for k in ("model", "store_median", "global_median"))
    assert model["mae_s"] < store["mae_s"] < overall["mae_s"]
    assert model["p50_abs_error_s"] < store["p50_abs_error_s"]
    assert model["within_10min"] > store["within_10min"]
    assert result.worse_than() == {}
    assert model["rows"] == store["rows"] == overall["rows"]


@pytest.mark.parametrize("objective", ["l1", "l2", "log_l2"])
def test_every_objective_trains_and_predicts_seconds(objective: str) -> None:
    split = small_split()
    config = TrainConfig(objective=objective, num_boost_round=30, learning_rate=0.2)  # type: ignore[arg-type]  # objective a str from parametrize; TrainConfig takes its Literal
    result = train_model(split, feature_dtypes(), config)

    predictions = result.predict(split.x_valid)
    assert predictions.min() >= 0
    assert 500 < float(np.median(predictions)) < 10_000  # seconds, not log-seconds


def test_split_is_by_time_and_drops_unusable_labels() -> None:
    frame = synthetic_training_set(1000, seed=2)
    labels = frame[LABEL].to_numpy().copy()
    labels[:3] = [np.nan, -5.0, 0.0]
    frame = frame.with_columns(pl.Series(LABEL, labels))

    split = split_by_time(frame.reverse(), feature_names(), 0.2)

    assert split.dropped_labels == 3
    assert split.train_window[1] < split.valid_window[0]
    assert split.y_train.size + split.y_valid.size == 997
    assert 190 <= split.y_valid.size <= 210
    assert split.x_train.shape[1] == len(feature_names())


def test_rows_sharing_the_cut_timestamp_all_go_to_validation() -> None:
    frame = synthetic_training_set(200, seed=3)
    stamp = frame["created_at"][150]
    frame = frame.with_columns(
        pl.when(pl.int_range(pl.len()).is_between(140, 160))
        .then(pl.lit(stamp))
        .otherwise(pl.col("created_at"))
        .alias("created_at")
    )

    split = split_by_time(frame, feature_names(), 0.25)

    assert split.valid_window[0] == stamp
    assert split.train_window[1] < stamp


def test_training_set_missing_a_feature_is_refused_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "ts.parquet"
    synthetic_training_set(100).drop("market__busy_ratio").write_parquet(path)

    with pytest.raises(TrainingSetError, match="market__busy_ratio"):
        load_training_set(path, feature_names())


def test_training_set_that_is_not_parquet_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ts.parquet"
    path.write_text("order_id,created_at\n")

    with pytest.raises(TrainingSetError, match="not a readable Parquet"):
        load_split(path)


def test_too_small_training_set_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ts.parquet"
    synthetic_training_set(30).write_parquet(path)

    with pytest.raises(TrainingSetError, match="usable rows"):
        load_split(path)


def test_model_that_does_not_beat_a_baseline_is_refused_unless_forced(tmp_path: Path) -> None:
    # The store-median column holds the label itself: that baseline is perfect, no model beats it.
    frame = synthetic_training_set(2000, seed=4)
    frame = frame.with_columns(pl.col(LABEL).alias("store__delivery_duration_median__28d"))
    split = split_by_time(frame, feature_names(), 0.2)

    with pytest.raises(ModelNotBetterError, match=r"store_median 0\.0") as caught:
        train_to_artifact(split, tmp_path / "a", name="eta", training_set="t", config=SMALL)
    assert "--force" in str(caught.value)
    assert not (tmp_path / "a").exists()

    outcome = train_to_artifact(
        split, tmp_path / "b", name="eta", training_set="t", config=SMALL, force=True
    )
    assert outcome.forced
    assert (tmp_path / "b" / "model.txt").is_file()


def test_eta_train_command_registers_promotes_and_prints_the_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from predictor.cli import app

    monkeypatch.delenv("ETA_REDIS_URL", raising=False)
    monkeypatch.setenv("ETA_REGISTRY_DIR", str(tmp_path / "models"))
    path = tmp_path / "ts.parquet"
    synthetic_training_set(3000, seed=5).write_parquet(path)

    result = CliRunner().invoke(
        app,
        ["train", "--training-set", str(path), "--max-rounds", "60", "--promote", "staging"],
        env={"COLUMNS": "200"},
    )

    assert result.exit_code == 0, result.output
    for text in ("store median", "global median", "within ±10 min", "registered eta:1"):
        assert text in result.output
    # the default (--objective auto) prints the objectives it compared and which won (#17.4)
    assert "candidates on the same split (chosen by MAE on the stopping rows)" in result.output
    rows = re.findall(r"│ (l1|huber|l2), (\d+) leaves, lr ([\d.]+) +│", result.output)
    assert [objective for objective, _, _ in rows[:3]] == list(SEARCH_OBJECTIVES)
    tried = [(int(leaves), float(lr)) for _, leaves, lr in rows[3:]]
    assert tried == list(SEARCH_TREES)
    assert result.output.count("chosen") == 2  # the table's title and its one chosen row
    assert re.search(r"eta: (l1|huber|l2) \(\d+ leaves, lr [\d.]+\) won", result.output)
    assert "Redis pointers were not updated" in result.output
    assert (tmp_path / "models" / "eta" / "1" / "model.txt").is_file()

    listing = CliRunner().invoke(app, ["models", "list"])
    assert listing.exit_code == 0, listing.output
    assert "staging=1" in listing.output


def test_eta_train_exits_1_with_the_reason_when_the_model_loses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from predictor.cli import app

    monkeypatch.setenv("ETA_REGISTRY_DIR", str(tmp_path / "models"))
    path = tmp_path / "ts.parquet"
    frame = synthetic_training_set(2000, seed=6)
    frame.with_columns(pl.col(LABEL).alias("store__delivery_duration_median__28d")).write_parquet(
        path
    )

    result = CliRunner().invoke(app, ["train", "--training-set", str(path), "--max-rounds", "30"])

    assert result.exit_code == 1
    assert "not registered" in result.output
    assert "validation (refused)" in result.output  # the numbers behind the refusal
    assert not (tmp_path / "models" / "eta").exists()


def test_compare_objectives_trains_each_and_registers_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from predictor.cli import app

    monkeypatch.setenv("ETA_REGISTRY_DIR", str(tmp_path / "models"))
    path = tmp_path / "ts.parquet"
    synthetic_training_set(2000, seed=7).write_parquet(path)

    result = CliRunner().invoke(
        app,
        ["train", "--training-set", str(path), "--max-rounds", "20", "--compare-objectives"],
        env={"COLUMNS": "200"},
    )

    assert result.exit_code == 0, result.output
    for objective in ("huber", "l1", "l2", "log_l2", "store median"):
        assert objective in result.output
    assert not (tmp_path / "models").exists()

"""The retraining trigger: staging always, production only when it wins on a holdout.

Both cases are real training runs, not stubs. Production is trained on 6,000 generated orders.
When the recent joined pairs come from a marketplace whose deliveries now take 15 minutes
longer, the retrained model wins on the holdout and is promoted. When they come from the same
marketplace as production's training data but are few (500 orders), the retrained model is
registered at staging and loses to production on the holdout: production stays.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest

from predictor.models.registry import Registry
from predictor.models.synthetic import LABEL, synthetic_training_set
from predictor.models.workflow import train_to_artifact
from predictor.monitoring.join import Joined
from predictor.monitoring.recording import JoinedLog, joined_frame, read_joined
from predictor.monitoring.retrain import RetrainTrigger, retrain_from_joined
from stream_features.definitions import feature_names
from tests.unit._training_data import SMALL, small_split


@pytest.fixture()
def registry(tmp_path: Path) -> Registry:
    registry = Registry(tmp_path / "models")
    outcome = train_to_artifact(
        small_split(rows=6000, seed=0),
        tmp_path / "production",
        name="eta",
        training_set="generated",
        config=SMALL,
        registry=registry,
        promote="production",
    )
    assert outcome.version == "1"
    return registry


def pairs_from(frame: pl.DataFrame, *, shift_s: float = 0.0, version: str = "1") -> list[Joined]:
    """Generated orders as the monitor would have joined them (features from the prediction)."""
    names = feature_names()
    out = []
    for row in frame.iter_rows(named=True):
        created = round(row["created_at"].timestamp() * 1000)
        actual = row[LABEL] + shift_s
        out.append(
            Joined(
                order_id=row["order_id"],
                model_name="eta",
                model_version=version,
                market_id=row["market_id"],
                store_id=row["store_id"],
                created_ms=created,
                served_ms=created + 15,
                delivered_ms=created + round(actual * 1000),
                predicted_s=1800.0,
                freshness_s=30.0,
                features={n: row[n] for n in names if not math.isnan(row[n])},
            )
        )
    return out


def test_a_better_model_on_shifted_outcomes_is_staged_then_promoted(
    registry: Registry, tmp_path: Path
) -> None:
    recent = joined_frame(pairs_from(synthetic_training_set(4000, seed=1), shift_s=900.0))

    result = retrain_from_joined(
        recent, registry, "eta", work_dir=tmp_path / "work", min_rows=1000, config=SMALL
    )

    assert result.outcome == "promoted", result.reason
    assert result.staged_version == "2" and result.production_version == "1"
    assert result.holdout_rows >= 800
    assert result.new_mae_s is not None and result.production_mae_s is not None
    assert result.new_mae_s < result.production_mae_s
    assert registry.aliases("eta") == {"production": "2", "staging": "2"}
    assert [m.to_version for m in registry.history("eta", "production")] == ["1", "2"]


def test_with_the_live_guard_a_better_model_waits_at_staging_for_live_evidence(
    registry: Registry, tmp_path: Path
) -> None:
    recent = joined_frame(pairs_from(synthetic_training_set(4000, seed=1), shift_s=900.0))

    result = retrain_from_joined(
        recent,
        registry,
        "eta",
        work_dir=tmp_path / "work",
        min_rows=1000,
        config=SMALL,
        live_guard=True,
    )

    assert result.outcome == "staged", result.reason
    assert "promote-if-better" in result.reason
    assert registry.aliases("eta") == {"production": "1", "staging": "2"}


def test_a_worse_model_is_registered_at_staging_and_never_promoted(
    registry: Registry, tmp_path: Path
) -> None:
    recent = joined_frame(pairs_from(synthetic_training_set(500, seed=2)))

    result = retrain_from_joined(
        recent, registry, "eta", work_dir=tmp_path / "work", min_rows=400, config=SMALL
    )

    assert result.outcome == "staged", result.reason
    assert result.staged_version == "2"
    assert result.new_mae_s is not None and result.production_mae_s is not None
    assert result.new_mae_s >= result.production_mae_s  # honestly worse on the same rows
    assert "does not beat production" in result.reason
    assert registry.aliases("eta") == {"production": "1", "staging": "2"}
    assert [m.to_version for m in registry.history("eta", "production")] == ["1"]


def test_too_few_pairs_with_features_are_skipped_and_nothing_is_registered(
    registry: Registry, tmp_path: Path
) -> None:
    pairs = pairs_from(synthetic_training_set(3000, seed=3))
    blind = joined_frame([replace(p, features=None) for p in pairs])  # features not included

    result = retrain_from_joined(blind, registry, "eta", work_dir=tmp_path / "w", min_rows=500)

    assert result.outcome == "skipped"
    assert "ETA_STREAM_INCLUDE_FEATURES=true" in result.reason
    assert registry.versions("eta") == ["1"]


def test_recorded_pairs_round_trip_through_the_monitors_files(tmp_path: Path) -> None:
    pairs = pairs_from(synthetic_training_set(300, seed=4))
    log = JoinedLog(tmp_path, keep_rows=150)
    for start in range(0, 300, 100):
        log.append(pairs[start : start + 100])
        log.flush()

    kept = read_joined(tmp_path)
    assert kept.height == 200  # the oldest part went once 150 rows were kept after it
    assert set(kept["order_id"]) == {p.order_id for p in pairs[100:]}
    row = kept.filter(pl.col("order_id") == pairs[150].order_id).row(0, named=True)
    assert row["actual_duration_s"] == pytest.approx(pairs[150].actual_s)
    assert row["order__total_items"] == pairs[150].features["order__total_items"]  # type: ignore[index]  # features is Optional; these pairs were recorded with them


def test_the_trigger_fires_on_an_alert_at_most_once_per_cooldown() -> None:
    trigger = RetrainTrigger(cooldown_s=3600)
    assert trigger.due([], 0.0) is None
    assert trigger.due(["mae m1"], 10.0) == "mae m1"
    assert trigger.due(["psi eta:1 market__busy_ratio"], 3000.0) is None
    assert trigger.due(["mae *"], 3700.0) == "mae *"
    trigger.release()  # that run was skipped: too few rows
    assert trigger.due(["mae m2"], 3710.0) == "mae m2"


def test_eta_retrain_runs_on_the_recorded_pairs_and_prints_its_report(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from predictor.cli import app
    from predictor.monitoring.messages import RetrainReport

    log = JoinedLog(tmp_path / "data" / "monitor", keep_rows=100_000)
    log.append(pairs_from(synthetic_training_set(1500, seed=5), shift_s=900.0))
    log.flush()
    for key in ("ETA_REDIS_URL", "ETA_KAFKA_BOOTSTRAP_SERVERS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("ETA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ETA_REGISTRY_DIR", str(registry.root))
    monkeypatch.setenv("ETA_MONITOR_RETRAIN_MIN_ROWS", "1000")
    monkeypatch.setenv("ETA_MONITOR_RETRAIN_WINDOW_S", str(40 * 86400))  # the set spans 28 days

    monkeypatch.setenv("COLUMNS", "160")
    result = CliRunner().invoke(app, ["retrain", "--reason", "by hand"])

    assert result.exit_code == 0, result.output
    assert registry.aliases("eta") == {"production": "2", "staging": "2"}
    assert "retraining eta" in result.output and "{" not in result.output  # a table, not JSON
    assert "promoted" in result.output and "by hand" in result.output
    assert "holdout MAE (s), new" in result.output

    scripted = CliRunner().invoke(app, ["retrain", "--reason", "script", "--json"])
    report = RetrainReport.model_validate_json(scripted.output[scripted.output.index("{") :])
    assert report.trigger == "script" and report.outcome in ("promoted", "staged", "refused")

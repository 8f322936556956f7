"""From a training-set file to a written (and optionally registered) artifact, in one call.

The CLI and tests share this path, so what ``eta train`` does is what the tests check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from predictor.errors import ModelNotBetterError
from predictor.models.artifact import write_artifact
from predictor.models.dataset import Split, load_training_set, split_by_time
from predictor.models.metadata import build_metadata
from predictor.models.quantiles import RangeResult, range_metadata, train_range
from predictor.models.registry import AliasMove, Registry
from predictor.models.training import TrainConfig, TrainResult, train_model
from stream_features.definitions import FEATURES, feature_names, registry_hash

__all__ = ["TrainOutcome", "feature_dtypes", "load_split", "train_to_artifact"]


@dataclass(frozen=True)
class TrainOutcome:
    result: TrainResult
    split: Split
    artifact_dir: Path
    version: str | None
    promotion: AliasMove | None
    forced: bool
    """True when the model did not beat every baseline and was kept because of ``force``."""
    range: RangeResult | None = None


def feature_dtypes() -> dict[str, str]:
    return {f.name: getattr(f, "dtype", "float") for f in FEATURES}


def load_split(training_set: Path, valid_fraction: float = 0.2) -> Split:
    names = feature_names()
    frame = load_training_set(training_set, names)
    return split_by_time(frame, names, valid_fraction, source=training_set)


def train_to_artifact(
    split: Split,
    out_dir: Path,
    *,
    name: str,
    training_set: str,
    config: TrainConfig | None = None,
    registry: Registry | None = None,
    promote: str | None = None,
    force: bool = False,
    progress: Callable[[int, float], None] | None = None,
    with_range: bool = True,
) -> TrainOutcome:
    """Train, refuse a model that loses to a baseline (unless ``force``), fit the ETA range
    beside it (``quantiles``; ``with_range=False`` leaves it out), write, register."""
    dtypes = feature_dtypes()
    result = train_model(split, dtypes, config, progress)
    worse = result.worse_than()
    if worse and not force:
        raise ModelNotBetterError(
            "MAE", result.metrics["model"]["mae_s"], worse, dict(result.metrics)
        )
    metadata = build_metadata(
        result,
        split,
        dtypes,
        name=name,
        feature_registry_hash=registry_hash(),
        training_set=training_set,
    )
    fitted_range = train_range(split, dtypes, result) if with_range else None
    if fitted_range is not None:
        metadata["range"] = range_metadata(fitted_range)
    model_text = result.booster.model_to_string(num_iteration=result.best_iteration)
    write_artifact(
        out_dir, model_text, metadata, fitted_range.model_texts() if fitted_range else None
    )
    version = registry.register(out_dir, name) if registry is not None else None
    promotion = None
    if registry is not None and version is not None and promote:
        promotion = registry.promote(name, version, promote)
    return TrainOutcome(result, split, out_dir, version, promotion, bool(worse), fitted_range)

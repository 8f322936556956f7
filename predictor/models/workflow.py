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
from predictor.models.search import Candidate, search_model
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
    candidates: tuple[Candidate, ...] = ()
    """With ``search``: every configuration tried (its config equals the chosen result's)."""
    searched_rows: int = 0
    """With ``search``: the training rows the candidates were fitted on."""
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
    search: bool = False,
    on_candidate: Callable[[TrainConfig], Callable[[int, float], None] | None] | None = None,
    with_range: bool = True,
) -> TrainOutcome:
    """Train (with ``search``, choose among ``search_model``'s candidates, ``config`` as the
    base), refuse a model that loses to a baseline (unless ``force``), fit the ETA range
    beside it (``quantiles``; ``with_range=False`` leaves it out), write, register."""
    dtypes = feature_dtypes()
    candidates: tuple[Candidate, ...] = ()
    searched_rows = 0
    if search:
        found = search_model(split, dtypes, config, on_candidate)
        result, candidates = found.best.result, tuple(found.tried)
        searched_rows = found.searched_rows
    else:
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
    if candidates:
        metadata["search"] = [
            {
                "candidate": c.label,
                "objective": c.config.objective,
                "num_leaves": c.config.num_leaves,
                "learning_rate": c.config.learning_rate,
                "trees": c.result.best_iteration,
                "stop_mae_s": c.result.stop_mae_s,
                "valid_mae_s": c.result.metrics["model"]["mae_s"],
                "chosen": c.config == result.config,
                "fitted_rows": searched_rows,
            }
            for c in candidates
        ]
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
    return TrainOutcome(
        result,
        split,
        out_dir,
        version,
        promotion,
        bool(worse),
        candidates,
        searched_rows,
        fitted_range,
    )

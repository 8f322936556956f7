"""What an artifact says about itself: enough to serve it, audit it and watch it for drift."""

from __future__ import annotations

import platform
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np

from predictor.models.dataset import Split
from predictor.models.reference import reference_for
from predictor.models.training import TrainResult

__all__ = ["FORMAT_VERSION", "build_metadata", "library_versions"]

FORMAT_VERSION = 1
"""Bumped when the artifact layout or metadata keys change incompatibly."""


def library_versions() -> dict[str, str]:
    """Versions of what produced (and can read) the model."""
    found = {"python": platform.python_version()}
    for package in ("lightgbm", "numpy", "polars", "etastream"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "unknown"
    return found


def _window(window: tuple[datetime, datetime]) -> dict[str, str]:
    return {"min_created_at": window[0].isoformat(), "max_created_at": window[1].isoformat()}


def build_metadata(
    result: TrainResult,
    split: Split,
    dtypes: dict[str, str],
    *,
    name: str,
    feature_registry_hash: str,
    training_set: str,
) -> dict[str, Any]:
    """Metadata of a freshly trained model; ``version`` is given when it is registered."""
    references = {
        feature: reference_for(split.x_train[:, i], dtypes.get(feature, "float"))
        for i, feature in enumerate(split.feature_names)
    }
    return {
        "format_version": FORMAT_VERSION,
        "name": name,
        "version": None,
        "created_at": datetime.now(UTC).isoformat(),
        "feature_names": split.feature_names,
        "feature_dtypes": [dtypes.get(f, "float") for f in split.feature_names],
        "categorical_features": [f for f in split.feature_names if dtypes.get(f) == "category"],
        "feature_registry_hash": feature_registry_hash,
        "target": "actual_duration_s",
        "target_transform": result.target_transform,
        "objective": result.config.objective,
        "params": result.params,
        "num_trees": result.best_iteration,
        "training_set": training_set,
        "training": {
            "train": {**_window(split.train_window), "rows": int(split.y_train.size)},
            "valid": {**_window(split.valid_window), "rows": int(split.y_valid.size)},
            "dropped_label_rows": split.dropped_labels,
        },
        "metrics": {"validation": result.metrics, "primary": "mae_s"},
        "libraries": library_versions(),
        "reference": {
            "source": "training rows",
            "features": references,
            "prediction": reference_for(result.train_predictions, "float"),
            "label_median_s": float(np.median(split.y_train)),
        },
    }

"""Small generated training sets and trained artifacts for the model-lifecycle tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from predictor.models.dataset import Split, split_by_time
from predictor.models.synthetic import synthetic_training_set
from predictor.models.training import TrainConfig
from predictor.models.workflow import TrainOutcome, train_to_artifact
from stream_features.definitions import feature_names

__all__ = ["SMALL", "rows", "small_split", "write_small_artifact"]

SMALL = TrainConfig(num_boost_round=80, early_stopping_rounds=20, learning_rate=0.1, num_threads=1)
"""Few rounds: enough to beat the baselines on 4000 rows in well under a second."""


def small_split(rows: int = 4000, seed: int = 0) -> Split:
    return split_by_time(synthetic_training_set(rows, seed=seed), feature_names(), 0.2)


def write_small_artifact(
    out_dir: Path, *, seed: int = 0, name: str = "eta", shift_s: float = 0.0
) -> TrainOutcome:
    """Train on a generated set and write the artifact; ``shift_s`` moves every label, so two
    artifacts predict visibly different durations (tests tell versions apart by that)."""
    split = small_split(seed=seed)
    if shift_s:
        split = Split(
            split.feature_names,
            split.x_train,
            split.y_train + shift_s,
            split.x_valid,
            split.y_valid + shift_s,
            split.train_window,
            split.valid_window,
            split.dropped_labels,
        )
    return train_to_artifact(
        split, out_dir, name=name, training_set="generated", config=SMALL, force=bool(shift_s)
    )


def rows(n: int = 64, seed: int = 1) -> np.ndarray:
    """Feature rows in model order, from a generated set: a copy the test may write to (the
    split's arrays can be read-only views of polars' memory, as with polars 2)."""
    return small_split(rows=max(n * 6, 200), seed=seed).x_valid[:n].copy()

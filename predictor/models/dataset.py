"""Read a training set, check it against the feature registry, and split it by time.

The split is on ``created_at``: the model is trained on the earlier orders and judged on the
later ones, as it will be used, so a store's future never leaks into its past.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl

from predictor.errors import TrainingSetError
from predictor.models.synthetic import LABEL

__all__ = ["LABEL", "MIN_ROWS", "Split", "load_training_set", "split_by_time"]

MIN_ROWS = 20
"""Fewer rows than this on either side of the split cannot say anything about a model."""


@dataclass(frozen=True)
class Split:
    """Feature matrices (``feature_names`` order) and labels of both sides of the split."""

    feature_names: list[str]
    x_train: npt.NDArray[np.float64]
    y_train: npt.NDArray[np.float64]
    x_valid: npt.NDArray[np.float64]
    y_valid: npt.NDArray[np.float64]
    train_window: tuple[datetime, datetime]
    valid_window: tuple[datetime, datetime]
    dropped_labels: int
    """Rows left out because their label was missing, not finite or not positive."""


def load_training_set(path: Path, names: list[str]) -> pl.DataFrame:
    """The file's rows with ``created_at``, the features as Float64 and the label."""
    if not path.is_file():
        raise TrainingSetError(path, "no such file")
    try:
        schema = pl.read_parquet_schema(path)
    except Exception as exc:  # polars raises several kinds for a file that is not Parquet
        raise TrainingSetError(path, f"not a readable Parquet file ({exc})") from exc
    missing = [c for c in ["created_at", *names, LABEL] if c not in schema]
    if missing:
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise TrainingSetError(path, f"missing columns {shown}")
    frame = pl.read_parquet(path, columns=["created_at", *names, LABEL])
    if not isinstance(frame.schema["created_at"], pl.Datetime):
        raise TrainingSetError(path, f"created_at is {frame.schema['created_at']}, not a timestamp")
    try:
        return frame.with_columns(
            pl.col("created_at").dt.replace_time_zone(None).dt.replace_time_zone("UTC")
            if frame.schema["created_at"].time_zone is None
            else pl.col("created_at").dt.convert_time_zone("UTC"),
            *(pl.col(c).cast(pl.Float64, strict=True) for c in [*names, LABEL]),
        )
    except pl.exceptions.PolarsError as exc:
        raise TrainingSetError(path, f"a feature or label column is not numeric ({exc})") from exc


def split_by_time(
    frame: pl.DataFrame, names: list[str], valid_fraction: float, source: str | Path = "<frame>"
) -> Split:
    """Earlier ``1 - valid_fraction`` of the orders to train on, the later ones to validate.

    Rows sharing the cut-off timestamp all go to validation, so no instant is on both sides.
    """
    if not 0 < valid_fraction < 1:
        raise ValueError(f"valid_fraction must be in (0, 1), got {valid_fraction}")
    label = pl.col(LABEL)
    usable = frame.filter(label.is_not_null() & label.is_finite() & (label > 0))
    dropped = frame.height - usable.height
    usable = usable.filter(pl.col("created_at").is_not_null()).sort("created_at")
    if usable.height < 2 * MIN_ROWS:
        raise TrainingSetError(source, f"{usable.height} usable rows, need at least {2 * MIN_ROWS}")
    cut = usable["created_at"][int(usable.height * (1 - valid_fraction))]
    train = usable.filter(pl.col("created_at") < cut)
    valid = usable.filter(pl.col("created_at") >= cut)
    if train.height < MIN_ROWS or valid.height < MIN_ROWS:
        raise TrainingSetError(
            source,
            f"the time split at {cut} leaves {train.height} train and {valid.height} validation "
            f"rows, need {MIN_ROWS} each (too few distinct created_at values?)",
        )

    def window(part: pl.DataFrame) -> tuple[datetime, datetime]:
        return part["created_at"][0], part["created_at"][-1]

    return Split(
        feature_names=list(names),
        x_train=train.select(names).to_numpy().astype(np.float64, copy=False),
        y_train=train[LABEL].to_numpy().astype(np.float64, copy=False),
        x_valid=valid.select(names).to_numpy().astype(np.float64, copy=False),
        y_valid=valid[LABEL].to_numpy().astype(np.float64, copy=False),
        train_window=window(train),
        valid_window=window(valid),
        dropped_labels=dropped,
    )

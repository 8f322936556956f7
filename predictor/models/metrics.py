"""Error metrics of a duration model and the baselines it has to beat, on the same rows."""

from __future__ import annotations

from typing import TypedDict

import numpy as np
import numpy.typing as npt

__all__ = [
    "BASELINE_FEATURE",
    "WITHIN_S",
    "Metrics",
    "evaluate",
    "global_median_baseline",
    "store_median_baseline",
]

Array = npt.NDArray[np.float64]

BASELINE_FEATURE = "store__delivery_duration_median__28d"
WITHIN_S = 600.0
"""'Within ±10 min' is the share of orders whose absolute error is at most this."""


class Metrics(TypedDict):
    rows: int
    mae_s: float
    rmse_s: float
    p50_abs_error_s: float
    p90_abs_error_s: float
    within_10min: float


def evaluate(y_true: Array, y_pred: Array) -> Metrics:
    """MAE, RMSE, median and p90 absolute error, and the share within ±10 minutes.

    >>> m = evaluate(np.array([600.0, 1200.0, 1800.0]), np.array([600.0, 1500.0, 3000.0]))
    >>> m["mae_s"], m["p50_abs_error_s"], round(m["within_10min"], 3)
    (500.0, 300.0, 0.667)
    """
    if y_true.shape != y_pred.shape or y_true.size == 0:
        raise ValueError(f"need two equal, non-empty arrays, got {y_true.shape} {y_pred.shape}")
    err = np.abs(y_pred - y_true)
    return Metrics(
        rows=int(err.size),
        mae_s=float(err.mean()),
        rmse_s=float(np.sqrt(np.mean(err**2))),
        p50_abs_error_s=float(np.quantile(err, 0.5)),
        p90_abs_error_s=float(np.quantile(err, 0.9)),
        within_10min=float(np.mean(err <= WITHIN_S)),
    )


def global_median_baseline(train_labels: Array, n_rows: int) -> Array:
    """Every order gets the median duration of the training rows.

    >>> global_median_baseline(np.array([1.0, 2.0, 10.0]), 2)
    array([2., 2.])
    """
    return np.full(n_rows, float(np.median(train_labels)))


def store_median_baseline(store_median: Array, global_median: float) -> Array:
    """The store's 28-day median duration, the global median where the store has none.

    >>> store_median_baseline(np.array([1500.0, np.nan]), 2000.0)
    array([1500., 2000.])
    """
    return np.where(np.isfinite(store_median), store_median, global_median)

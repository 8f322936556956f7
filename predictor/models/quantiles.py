"""The ETA range: two quantile LightGBM models beside the point model, conformalised.

Each bound is a LightGBM model with the pinball (quantile) loss at ``alpha`` 0.1 and 0.9,
trained on the point model's fit rows with its parameters, stopped early on the same held-out
latest training rows. Quantile models alone cover less than they claim out of time (they fit
their own training rows too well, and the world drifts), so the bounds are then *conformalised*
(CQR, Romano et al. 2019): on the stop rows, which no tree was fit on, the score
``max(lower - y, y - upper)`` is computed and its ``(1 - 0.2)(1 + 1/n)`` quantile ``q`` widens
(or narrows, when negative) both bounds. The validation rows take no part, so the coverage
``eta train`` prints is out of sample. ``docs/models.md`` has the measurements behind the choice.

Scoring clips the range around the point ETA (``lower <= point <= upper``, ``lower >= 0``), one
rule for every serving path: ``artifact.range_bounds``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, TypedDict

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
from rich.table import Table

from predictor.models.artifact import LOWER_FILE, UPPER_FILE, range_bounds
from predictor.models.dataset import Split
from predictor.models.training import STOP_FRACTION, TrainResult, categorical_features

__all__ = [
    "LOWER_ALPHA",
    "UPPER_ALPHA",
    "RangeMetrics",
    "RangeResult",
    "conformal_offset",
    "range_metadata",
    "range_metrics",
    "range_table",
    "train_range",
]

log = logging.getLogger(__name__)
Array = npt.NDArray[np.float64]
LOWER_ALPHA, UPPER_ALPHA = 0.1, 0.9
NOMINAL = UPPER_ALPHA - LOWER_ALPHA
"""The share of durations the range claims to hold."""


class RangeMetrics(TypedDict):
    rows: int
    coverage: float
    """Share of actual durations inside ``[lower, upper]``."""
    mean_width_s: float
    below: float
    above: float


def range_metrics(y: Array, lower: Array, upper: Array) -> RangeMetrics:
    """Coverage, mean width and the shares that fell below and above the range.

    >>> m = range_metrics(np.array([1.0, 5.0, 9.0]), np.array([0.0, 0.0, 0.0]),
    ...                   np.array([2.0, 6.0, 8.0]))
    >>> round(m["coverage"], 3), m["mean_width_s"], round(m["above"], 3)
    (0.667, 5.333333333333333, 0.333)
    """
    return RangeMetrics(
        rows=int(y.size),
        coverage=float(np.mean((y >= lower) & (y <= upper))),
        mean_width_s=float(np.mean(upper - lower)),
        below=float(np.mean(y < lower)),
        above=float(np.mean(y > upper)),
    )


@dataclass(frozen=True)
class RangeResult:
    lower: lgb.Booster
    upper: lgb.Booster
    lower_trees: int
    upper_trees: int
    offset_s: float
    """The conformal correction added to both bounds (seconds; negative narrows)."""
    calibration_rows: int
    validation: dict[str, RangeMetrics]
    """``conformal`` (what serving uses) and ``quantile`` (the bounds as fit), out of sample."""

    def model_texts(self) -> dict[str, str]:
        return {
            LOWER_FILE: self.lower.model_to_string(num_iteration=self.lower_trees),
            UPPER_FILE: self.upper.model_to_string(num_iteration=self.upper_trees),
        }


def _fit_bound(
    alpha: float, params: dict[str, Any], split: Split, dtypes: dict[str, str], n_stop: int
) -> tuple[lgb.Booster, int]:
    x_fit, y_fit = split.x_train[:-n_stop], split.y_train[:-n_stop]
    x_stop, y_stop = split.x_train[-n_stop:], split.y_train[-n_stop:]
    train_set = lgb.Dataset(
        x_fit,
        y_fit,
        feature_name=split.feature_names,
        categorical_feature=categorical_features(split.feature_names, dtypes),
        params={"verbose": -1},
    )
    stop_set = train_set.create_valid(x_stop, y_stop, params={"verbose": -1})
    booster = lgb.train(
        {**params, "objective": "quantile", "alpha": alpha, "metric": "quantile"},
        train_set,
        num_boost_round=int(params.get("num_boost_round", 2000)),
        valid_sets=[stop_set],
        callbacks=[
            lgb.early_stopping(int(params.get("early_stopping_rounds", 100)), verbose=False)
        ],
    )
    booster.free_dataset()
    return booster, booster.best_iteration or booster.current_iteration()


def conformal_offset(y: Array, lower: Array, upper: Array, miscoverage: float) -> float:
    """CQR's correction: the finite-sample ``(1 - miscoverage)`` quantile of the scores
    ``max(lower - y, y - upper)`` on calibration rows.

    >>> conformal_offset(np.arange(10.0), np.full(10, 2.0), np.full(10, 6.0), 0.2)
    2.0
    """
    scores = np.maximum(lower - y, y - upper)
    level = min(1.0, (1 - miscoverage) * (1 + 1 / scores.size))
    return float(np.quantile(scores, level, method="higher"))


def train_range(
    split: Split, dtypes: dict[str, str], point: TrainResult, *, conformal: bool = True
) -> RangeResult:
    """Fit both bound models beside ``point``, calibrate them on the stop rows, and measure
    the range on the validation rows (which neither fit, stopping nor calibration saw)."""
    n_stop = max(1, int(split.y_train.size * STOP_FRACTION))
    params = {k: v for k, v in point.params.items() if k not in ("objective", "alpha", "metric")}
    params["num_boost_round"] = point.config.num_boost_round
    params["early_stopping_rounds"] = point.config.early_stopping_rounds
    lower, lower_trees = _fit_bound(LOWER_ALPHA, params, split, dtypes, n_stop)
    upper, upper_trees = _fit_bound(UPPER_ALPHA, params, split, dtypes, n_stop)

    def raw(x: Array) -> tuple[Array, Array]:
        return (
            np.asarray(lower.predict(x, num_iteration=lower_trees), dtype=np.float64),
            np.asarray(upper.predict(x, num_iteration=upper_trees), dtype=np.float64),
        )

    stop_lo, stop_hi = raw(split.x_train[-n_stop:])
    calib_y = split.y_train[-n_stop:]
    offset = conformal_offset(calib_y, stop_lo, stop_hi, 1 - NOMINAL) if conformal else 0.0
    valid_point = point.predict(split.x_valid)
    valid_lo, valid_hi = raw(split.x_valid)
    plain = range_bounds(valid_point, valid_lo, valid_hi, 0.0)
    calibrated = range_bounds(valid_point, valid_lo, valid_hi, offset)
    validation = {
        "conformal": range_metrics(split.y_valid, calibrated[0], calibrated[1]),
        "quantile": range_metrics(split.y_valid, plain[0], plain[1]),
    }
    log.info(
        "range: %d + %d trees, conformal offset %.1f s, validation coverage %.1f%%",
        lower_trees,
        upper_trees,
        offset,
        100 * validation["conformal"]["coverage"],
    )
    return RangeResult(lower, upper, lower_trees, upper_trees, offset, n_stop, validation)


def range_metadata(result: RangeResult) -> dict[str, Any]:
    """What the artifact's metadata says of its range (``metadata["range"]``)."""
    return {
        "method": "conformalised quantile regression",
        "lower": {"file": LOWER_FILE, "alpha": LOWER_ALPHA, "num_trees": result.lower_trees},
        "upper": {"file": UPPER_FILE, "alpha": UPPER_ALPHA, "num_trees": result.upper_trees},
        "nominal_coverage": round(NOMINAL, 6),
        "conformal_offset_s": result.offset_s,
        "calibration": {"rows": result.calibration_rows, "source": "stop rows (latest train)"},
        "validation": result.validation,
    }


def range_table(result: RangeResult) -> Table:
    """What ``eta train`` prints of the range: coverage and mean width on the validation rows,
    the conformalised range (served) beside the bounds as fit, against the 80% target."""
    table = Table(title=f"ETA range p10–p90 (validation; target {NOMINAL:.0%} ± 3 points)")
    for column in ("range", "coverage", "mean width", "below p10", "above p90"):
        table.add_column(column, justify="left" if column == "range" else "right")
    for label, key in (
        (f"conformalised (served, offset {result.offset_s:+.0f} s)", "conformal"),
        ("quantile models as fit", "quantile"),
    ):
        m = result.validation[key]
        inside = abs(m["coverage"] - NOMINAL) <= 0.03
        shown = f"{m['coverage']:.1%}" if inside else f"[bold red]{m['coverage']:.1%}[/]"
        table.add_row(
            label, shown, f"{m['mean_width_s']:.0f} s", f"{m['below']:.1%}", f"{m['above']:.1%}"
        )
    return table

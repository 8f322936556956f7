"""Train the LightGBM duration model on a time split and judge it against two baselines.

Delivery labels carry gross outliers (orders closed hours late, clock skew), so the default
objective is robust to them; ``docs/models.md`` has the measurements behind the choice. Early
stopping watches the MAE in seconds whatever the objective, so every objective is stopped on
the quantity the model is judged by; it watches the latest ``STOP_FRACTION`` of the training
rows, never the validation rows, so the reported metrics are on rows no choice was made on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import lightgbm as lgb
import numpy as np
import numpy.typing as npt

from predictor.models.artifact import finish_predictions
from predictor.models.dataset import Split
from predictor.models.metrics import (
    BASELINE_FEATURE,
    Metrics,
    evaluate,
    global_median_baseline,
    store_median_baseline,
)

__all__ = [
    "DEFAULT_OBJECTIVE",
    "Objective",
    "TrainConfig",
    "TrainResult",
    "categorical_features",
    "train_model",
]

log = logging.getLogger(__name__)
Array = npt.NDArray[np.float64]
Objective = Literal["huber", "l1", "l2", "log_l2"]
DEFAULT_OBJECTIVE: Objective = "huber"
OBJECTIVES: tuple[Objective, ...] = get_args(Objective)
STOP_FRACTION = 0.1
"""The latest share of the training rows (by time) held out to stop boosting on."""


@dataclass(frozen=True)
class TrainConfig:
    objective: Objective = DEFAULT_OBJECTIVE
    num_boost_round: int = 2000
    early_stopping_rounds: int = 100
    learning_rate: float = 0.1
    num_leaves: int = 31
    huber_delta_s: float = 300.0
    """Huber's switch from squared to absolute loss, in seconds of error."""
    log_clip_quantile: float = 0.995
    """log_l2 clips training labels above this quantile of the train labels."""
    seed: int = 0
    num_threads: int = 0
    extra_params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainResult:
    booster: lgb.Booster
    config: TrainConfig
    target_transform: Literal["identity", "log1p"]
    params: dict[str, Any]
    best_iteration: int
    metrics: dict[str, Metrics]
    """``model``, ``global_median`` and ``store_median`` on the same validation rows."""
    train_predictions: Array
    stop_mae_s: float = float("nan")
    """MAE in seconds on the stopping rows at the best iteration: what a search chooses by."""

    def predict(self, x: Array) -> Array:
        return finish_predictions(
            self.booster.predict(x, num_iteration=self.best_iteration), self.target_transform
        )

    def worse_than(self) -> dict[str, float]:
        """Baselines whose validation MAE the model does not beat (empty when it beats all)."""
        model = self.metrics["model"]["mae_s"]
        return {
            name: m["mae_s"]
            for name, m in self.metrics.items()
            if name != "model" and m["mae_s"] <= model
        }


def categorical_features(names: list[str], dtypes: dict[str, str]) -> list[str]:
    """The inputs LightGBM must split as categories, not as ordered numbers.

    >>> categorical_features(["a", "b"], {"a": "float", "b": "category"})
    ['b']
    """
    return [n for n in names if dtypes.get(n) == "category"]


def _params(config: TrainConfig, n_train: int) -> dict[str, Any]:
    by_name: dict[str, dict[str, Any]] = {
        "huber": {"objective": "huber", "alpha": config.huber_delta_s},
        "l1": {"objective": "regression_l1"},
        "l2": {"objective": "regression"},
        "log_l2": {"objective": "regression"},
    }
    objective = by_name[config.objective]
    return {
        **objective,
        "metric": "None",  # the MAE in seconds below is the one stopping criterion
        "learning_rate": config.learning_rate,
        "num_leaves": config.num_leaves,
        "min_data_in_leaf": int(min(50, max(5, n_train // 200))),
        "feature_fraction": 0.9,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "lambda_l2": 1.0,
        "seed": config.seed,
        "deterministic": True,
        "num_threads": config.num_threads,
        "verbose": -1,
        **config.extra_params,
    }


def train_model(
    split: Split,
    dtypes: dict[str, str],
    config: TrainConfig | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Fit on the earlier training rows, stop early on the latest ones, and score the model and
    the baselines on the validation rows (later still, untouched by training and stopping)."""
    config = config or TrainConfig()
    if config.objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {config.objective!r}")
    transform: Literal["identity", "log1p"] = "identity"
    n_stop = max(1, int(split.y_train.size * STOP_FRACTION))
    x_fit, y_fit = split.x_train[:-n_stop], split.y_train[:-n_stop]
    x_stop, y_stop = split.x_train[-n_stop:], split.y_train[-n_stop:]
    if config.objective == "log_l2":
        transform = "log1p"
        y_fit = np.log1p(np.minimum(y_fit, np.quantile(y_fit, config.log_clip_quantile)))
    params = _params(config, split.y_train.size)
    cats = categorical_features(split.feature_names, dtypes)
    train_set = lgb.Dataset(
        x_fit,
        y_fit,
        feature_name=split.feature_names,
        categorical_feature=cats,
        params={"verbose": -1},
        free_raw_data=False,
    )
    y_stop_fit = y_stop if transform == "identity" else np.log1p(y_stop)
    stop_set = train_set.create_valid(x_stop, y_stop_fit, params={"verbose": -1})

    def mae_seconds(preds: Array, data: lgb.Dataset) -> tuple[str, float, bool]:
        return (
            "mae_s",
            float(np.mean(np.abs(finish_predictions(preds, transform) - y_stop))),
            False,
        )

    def report(env: Any) -> None:
        if progress is not None and env.evaluation_result_list:
            progress(env.iteration + 1, env.evaluation_result_list[0][2])

    booster = lgb.train(
        params,
        train_set,
        num_boost_round=config.num_boost_round,
        valid_sets=[stop_set],
        valid_names=["stop"],
        feval=mae_seconds,
        callbacks=[
            lgb.early_stopping(config.early_stopping_rounds, verbose=False),
            report,
        ],
    )
    best = booster.best_iteration or booster.current_iteration()
    stop_mae = float(booster.best_score.get("stop", {}).get("mae_s", float("nan")))
    booster.free_dataset()
    predict_valid = finish_predictions(
        booster.predict(split.x_valid, num_iteration=best), transform
    )
    global_median = float(np.median(split.y_train))
    store_col = split.x_valid[:, split.feature_names.index(BASELINE_FEATURE)]
    metrics = {
        "model": evaluate(split.y_valid, predict_valid),
        "global_median": evaluate(
            split.y_valid, global_median_baseline(split.y_train, split.y_valid.size)
        ),
        "store_median": evaluate(split.y_valid, store_median_baseline(store_col, global_median)),
    }
    log.info(
        "%s: %d trees, validation MAE %.1f s", config.objective, best, metrics["model"]["mae_s"]
    )
    return TrainResult(
        booster=booster,
        config=config,
        target_transform=transform,
        params=params,
        best_iteration=best,
        metrics=metrics,
        train_predictions=finish_predictions(
            booster.predict(split.x_train, num_iteration=best), transform
        ),
        stop_mae_s=stop_mae,
    )

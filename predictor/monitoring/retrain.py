"""Retraining from what the monitor joined: staging always, production only when it wins.

The joined pairs whose predictions carried their features are training rows as the stream
computed them (point-in-time by construction) with the actual duration (``actual_duration_s``,
the training sets' label) as label. The latest
``holdout_fraction`` of them (by order time) is held out; the rest is split by time again for
early stopping and trained with ``train_to_artifact`` (which refuses a model that loses to the
median baselines). The new version is registered and pointed at by the staging alias. It is
promoted to production only when its MAE on the holdout is below production's on the same
rows by more than ``min_gain_s``; otherwise production is left alone, and the outcome says why.
With ``live_guard`` (the worker shadows the staging stage, ``ETA_SHADOW_STAGE``) the holdout
only reports: the new version stays at staging, where the shadow scores it on live orders, and
``eta models promote-if-better`` promotes it on that evidence (``predictor.models.guard``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl

from predictor.errors import ModelNotBetterError, TrainingSetError
from predictor.models.dataset import LABEL, MIN_ROWS, split_by_time
from predictor.models.registry import Registry
from predictor.models.training import TrainConfig
from predictor.models.workflow import train_to_artifact
from stream_features.definitions import feature_names
from stream_features.errors import EtaError

__all__ = ["RetrainOutcome", "RetrainTrigger", "retrain_from_joined", "split_holdout"]

Outcome = Literal["promoted", "staged", "refused", "skipped", "failed"]


@dataclass(frozen=True)
class RetrainOutcome:
    outcome: Outcome
    reason: str
    rows: int
    staged_version: str | None = None
    production_version: str | None = None
    holdout_rows: int = 0
    new_mae_s: float | None = None
    production_mae_s: float | None = None


def split_holdout(rows: pl.DataFrame, fraction: float) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(earlier rows, latest ``fraction`` by ``created_at``); one instant is never split.

    >>> from datetime import UTC, datetime, timedelta
    >>> t = [datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=m) for m in (0, 1, 2, 2, 3)]
    >>> early, late = split_holdout(pl.DataFrame({"created_at": t}), 0.4)
    >>> early.height, late.height
    (2, 3)
    """
    ordered = rows.sort("created_at")
    cut = ordered["created_at"][int(ordered.height * (1 - fraction))]
    return ordered.filter(pl.col("created_at") < cut), ordered.filter(pl.col("created_at") >= cut)


def _mae(predicted: np.ndarray, actual: np.ndarray) -> float:
    return float(np.mean(np.abs(predicted - actual)))


def retrain_from_joined(
    joined: pl.DataFrame,
    registry: Registry,
    name: str,
    *,
    work_dir: Path,
    production_stage: str = "production",
    staging_stage: str = "staging",
    holdout_fraction: float = 0.2,
    min_rows: int = 2000,
    min_gain_s: float = 0.0,
    config: TrainConfig | None = None,
    live_guard: bool = False,
) -> RetrainOutcome:
    """Train on the joined pairs of ``name``, register as staging, promote only if better."""
    names = feature_names()
    rows = joined.filter((pl.col("model_name") == name) & pl.col("has_features"))
    rows = rows.unique("order_id", keep="last", maintain_order=True)
    if rows.height < max(min_rows, 4 * MIN_ROWS):
        return RetrainOutcome(
            "skipped",
            f"{rows.height} joined pairs of {name!r} carry their features, fewer than the "
            f"{max(min_rows, 4 * MIN_ROWS)} needed (predictions carry features only with "
            "ETA_STREAM_INCLUDE_FEATURES=true)",
            rows.height,
        )
    train_rows, holdout = split_holdout(rows, holdout_fraction)
    window = f"{train_rows['created_at'][0]} .. {holdout['created_at'][-1]}"
    try:
        split = split_by_time(train_rows, names, 0.2, source="monitor joined pairs")
        outcome = train_to_artifact(
            split,
            work_dir / "retrained",
            name=name,
            training_set=f"monitor joined pairs, orders {window}",
            config=config,
            registry=registry,
            promote=staging_stage,
        )
    except ModelNotBetterError as exc:
        return RetrainOutcome("refused", f"not registered: {exc}", rows.height)
    except TrainingSetError as exc:
        return RetrainOutcome("skipped", str(exc), rows.height)
    staged = outcome.version
    assert staged is not None  # a registry was given
    x = holdout.select(names).to_numpy().astype(np.float64)
    y = holdout[LABEL].to_numpy().astype(np.float64)
    new_mae = _mae(registry.load(name, staged).predict(x), y)
    production = registry.aliases(name).get(production_stage)
    if production is None:
        return RetrainOutcome(
            "staged",
            f"no {production_stage} version to compare with: left at {staging_stage}",
            rows.height,
            staged,
            None,
            holdout.height,
            new_mae,
        )
    try:
        production_mae = _mae(registry.load(name, production).predict(x), y)
    except EtaError as exc:
        return RetrainOutcome(
            "staged",
            f"{production_stage} version {production} cannot be scored ({exc}): not promoted",
            rows.height,
            staged,
            production,
            holdout.height,
            new_mae,
        )
    result = RetrainOutcome(
        "staged",
        "",
        rows.height,
        staged,
        production,
        holdout.height,
        new_mae,
        production_mae,
    )
    if live_guard:
        return _with(
            result,
            "staged",
            f"holdout MAE {new_mae:.1f} s against {production_stage}'s {production_mae:.1f} s; "
            f"left at {staging_stage}, which the worker shadows: `eta models promote-if-better "
            f"--stage {staging_stage}` promotes it once it wins on live orders",
        )
    if new_mae < production_mae - min_gain_s:
        registry.promote(name, staged, production_stage)
        return _with(
            result, "promoted", f"holdout MAE {new_mae:.1f} s beats {production_mae:.1f} s"
        )
    return _with(
        result,
        "staged",
        f"holdout MAE {new_mae:.1f} s does not beat {production_stage} ({production_mae:.1f} s"
        + (f" by {min_gain_s:.0f} s" if min_gain_s else "")
        + f"): left at {staging_stage}, {production_stage} unchanged",
    )


def _with(result: RetrainOutcome, outcome: Outcome, reason: str) -> RetrainOutcome:
    return replace(result, outcome=outcome, reason=reason)


class RetrainTrigger:
    """When an MAE or PSI alert fires, at most once per ``cooldown_s`` (wall clock); a run
    skipped for want of rows does not count (a monitor catching up on a backlog may see the
    first alert before the deliveries that make the rows).

    >>> trigger = RetrainTrigger(cooldown_s=600)
    >>> trigger.due(["psi market__busy_ratio"], now_s=0.0), trigger.due(["mae m1"], now_s=60.0)
    ('psi market__busy_ratio', None)
    """

    def __init__(self, cooldown_s: float) -> None:
        self.cooldown_s = cooldown_s
        self._last: float | None = None

    def due(self, firing: list[str], now_s: float) -> str | None:
        """The reason to retrain now (the first firing alert), or None."""
        if not firing:
            return None
        if self._last is not None and now_s - self._last < self.cooldown_s:
            return None
        self._last = now_s
        return firing[0]

    def release(self) -> None:
        """Forget the last run (it was skipped: too few rows), so the next alert may retry."""
        self._last = None

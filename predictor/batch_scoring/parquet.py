"""The Parquet side of a batch run: its rows, and a run directory moved into place whole."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import polars as pl

from predictor.batch_scoring.summary import BatchRun
from predictor.serving.pipeline import ScoringModel
from stream_features.contract import OrderCreated, to_ms

__all__ = ["prediction_frame", "write_run"]


def prediction_frame(
    orders: list[OrderCreated],
    keep: list[int],
    durations: list[float],
    freshness: list[float],
    model: ScoringModel,
    run: BatchRun,
    bounds: tuple[list[float | None], list[float | None]] | None = None,
) -> pl.DataFrame:
    """The Parquet rows of the kept predictions (row ``j`` is store ``j // K``, slot ``j % K``);
    the range columns are null where a prediction has no range."""
    k = run.slots
    rows = np.asarray(keep, dtype=np.int64)
    slot = rows % k
    created_ms = to_ms(run.as_of) + slot * 3_600_000
    seconds = np.maximum(np.asarray(durations, dtype=np.float64)[rows], 0.0)
    fresh = np.asarray(freshness, dtype=np.float64)[rows]
    kept = [orders[j] for j in keep]
    low, high = bounds or ([None] * len(orders), [None] * len(orders))
    return pl.DataFrame(
        {
            "store_id": [o.store_id for o in kept],
            "market_id": [o.market_id for o in kept],
            "slot": slot.astype(np.int16),
            "order_id": [o.order_id for o in kept],
            "created_ms": created_ms,
            "predicted_duration_s": seconds,
            "predicted_duration_p10_s": pl.Series([low[j] for j in keep], dtype=pl.Float64),
            "predicted_duration_p90_s": pl.Series([high[j] for j in keep], dtype=pl.Float64),
            "delivery_ms": created_ms + np.rint(seconds * 1000).astype(np.int64),
            "feature_freshness_s": fresh,
        }
    ).select(
        "store_id",
        "market_id",
        "slot",
        "order_id",
        pl.from_epoch("created_ms", "ms").dt.replace_time_zone("UTC").alias("created_at"),
        "predicted_duration_s",
        "predicted_duration_p10_s",
        "predicted_duration_p90_s",
        pl.from_epoch("delivery_ms", "ms")
        .dt.replace_time_zone("UTC")
        .alias("predicted_delivery_at"),
        pl.col("feature_freshness_s").fill_nan(None).clip(lower_bound=0.0),
        pl.lit(model.name).alias("model_name"),
        pl.lit(model.version).alias("model_version"),
        pl.lit(run.version).alias("batch_version"),
    )


def write_run(
    out_dir: Path, run: BatchRun, frames: list[pl.DataFrame], profiles: pl.DataFrame
) -> Path:
    """Write ``out_dir/<version>`` whole (into a temporary sibling, then one rename) and point
    ``out_dir/CURRENT`` at it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / run.version
    partial = out_dir / f".{run.version}.partial"
    partial.mkdir()
    try:
        pl.concat(frames, how="vertical").write_parquet(partial / "predictions.parquet")
        profiles.write_parquet(partial / "profiles.parquet")
        partial.rename(final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return final

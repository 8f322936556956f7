"""The Parquet side of a batch run: its rows, and a run directory moved into place whole."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import numpy as np
import polars as pl

from predictor.batch_scoring.summary import BatchRun
from predictor.errors import OutputWriteError
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
    final = out_dir / run.version
    partial = out_dir / f".{run.version}.partial"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        partial.mkdir()
    except OSError as exc:
        raise OutputWriteError.of(partial, exc) from exc
    target = partial
    try:
        target = partial / "predictions.parquet"
        pl.concat(frames, how="vertical").write_parquet(target)
        target = partial / "profiles.parquet"
        profiles.write_parquet(target)
        target = final
        partial.rename(final)
    except (OSError, pl.exceptions.PolarsError) as exc:
        # a full disk surfaces from Polars as a ComputeError ("... (os error 28)")
        shutil.rmtree(partial, ignore_errors=True)
        raise _write_error(target, exc) from exc
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return final


def _write_error(target: Path, exc: BaseException) -> OutputWriteError:
    """The error to report: Polars's message can hide ENOSPC ("Invalid thrift: transport
    error" when the disk fills mid-footer), so a full filesystem is said in words."""
    error = OutputWriteError.of(target, exc)
    if "os error 28" in error.reason or "No space left" in error.reason:
        return OutputWriteError(target, "No space left on device")
    with contextlib.suppress(OSError):
        existing = next(p for p in (target, *target.parents) if p.exists())
        if os.statvfs(existing).f_bavail == 0:
            return OutputWriteError(target, f"No space left on device ({error.reason})")
    return error

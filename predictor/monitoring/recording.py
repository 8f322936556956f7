"""What the monitor keeps on disk for the report, the retrainer and its own restart.

Under ``<data_dir>/monitor/``:

    joined/part-<ms>-<n>.parquet   joined pairs: ids, model, times, predicted (with the ETA
                                   range, null without one) and actual seconds, freshness,
                                   and the features when predictions
                                   carried them; written at every publish, the oldest parts
                                   deleted beyond ``keep_rows``
    shadow/part-<ms>-<n>.parquet   joined shadow records: champion and challenger versions and
                                   predictions of one delivered order (``paired_frame``), for
                                   ``eta models promote-if-better``; kept as ``joined/`` is
    summaries.json                 the latest MonitorSummary of each window (atomic replace)

Parquet, so the report and ``eta retrain`` read it with Polars and any tool can open it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pyarrow.parquet as pq

from predictor.models.artifact import atomic_write
from predictor.monitoring.join import Joined, PairedJoined
from predictor.monitoring.messages import MonitorSummary
from stream_features.contract import STREAM_MODE, DeliveryPrediction
from stream_features.definitions import feature_names

__all__ = [
    "JoinedLog",
    "frame_to_joined",
    "frame_to_paired",
    "joined_frame",
    "joined_to_predictions",
    "paired_frame",
    "read_joined",
    "read_paired",
    "read_summaries",
    "write_summaries",
]

_TIME = pl.Datetime("us", "UTC")


def _ts(ms: Sequence[int]) -> pl.Series:
    return pl.Series(list(ms), dtype=pl.Int64).cast(pl.Datetime("ms", "UTC")).cast(_TIME)


def _seconds(values: Sequence[float]) -> pl.Series:
    """Seconds with NaN (not measured) as null, as Parquet readers expect a missing value."""
    return pl.Series([None if math.isnan(v) else v for v in values], dtype=pl.Float64)


def joined_frame(pairs: Sequence[Joined]) -> pl.DataFrame:
    """Joined pairs as rows, one Float64 column per model feature (null when absent)."""
    names = feature_names()
    columns: dict[str, pl.Series] = {
        "order_id": pl.Series([p.order_id for p in pairs], dtype=pl.String),
        "model_name": pl.Series([p.model_name for p in pairs], dtype=pl.String),
        "model_version": pl.Series([p.model_version for p in pairs], dtype=pl.String),
        "market_id": pl.Series([p.market_id for p in pairs], dtype=pl.String),
        "store_id": pl.Series([p.store_id for p in pairs], dtype=pl.String),
        "created_at": _ts([p.created_ms for p in pairs]),
        "served_at": _ts([p.served_ms for p in pairs]),
        "delivered_at": _ts([p.delivered_ms for p in pairs]),
        "predicted_duration_s": pl.Series([p.predicted_s for p in pairs], dtype=pl.Float64),
        "predicted_duration_p10_s": _seconds([p.p10_s for p in pairs]),
        "predicted_duration_p90_s": _seconds([p.p90_s for p in pairs]),
        "actual_duration_s": pl.Series([p.actual_s for p in pairs], dtype=pl.Float64),
        "feature_freshness_s": pl.Series(
            [None if math.isnan(p.freshness_s) else p.freshness_s for p in pairs],
            dtype=pl.Float64,
        ),
        "has_features": pl.Series([p.features is not None for p in pairs], dtype=pl.Boolean),
    }
    for name in names:
        columns[name] = pl.Series(
            [None if p.features is None else p.features.get(name) for p in pairs],
            dtype=pl.Float64,
        )
    return pl.DataFrame(columns)


def paired_frame(pairs: Sequence[PairedJoined]) -> pl.DataFrame:
    """Joined shadow records as rows."""
    return pl.DataFrame(
        {
            "order_id": pl.Series([p.order_id for p in pairs], dtype=pl.String),
            "model_name": pl.Series([p.model_name for p in pairs], dtype=pl.String),
            "champion_version": pl.Series([p.champion_version for p in pairs], dtype=pl.String),
            "challenger_version": pl.Series([p.challenger_version for p in pairs], dtype=pl.String),
            "challenger_stage": pl.Series([p.challenger_stage for p in pairs], dtype=pl.String),
            "market_id": pl.Series([p.market_id for p in pairs], dtype=pl.String),
            "created_at": _ts([p.created_ms for p in pairs]),
            "delivered_at": _ts([p.delivered_ms for p in pairs]),
            "champion_duration_s": pl.Series([p.champion_s for p in pairs], dtype=pl.Float64),
            "challenger_duration_s": pl.Series([p.challenger_s for p in pairs], dtype=pl.Float64),
            "actual_duration_s": pl.Series([p.actual_s for p in pairs], dtype=pl.Float64),
            "mode": pl.Series([p.mode for p in pairs], dtype=pl.String),
        }
    )


def frame_to_paired(frame: pl.DataFrame) -> list[PairedJoined]:
    """Rows written by ``paired_frame`` back as pairs (the monitor restores its windows)."""
    return [
        PairedJoined(
            order_id=row["order_id"],
            model_name=row["model_name"],
            champion_version=row["champion_version"],
            challenger_version=row["challenger_version"],
            challenger_stage=row["challenger_stage"],
            market_id=row["market_id"],
            created_ms=_ms(row["created_at"]),
            delivered_ms=_ms(row["delivered_at"]),
            champion_s=float(row["champion_duration_s"]),
            challenger_s=float(row["challenger_duration_s"]),
            mode=row.get("mode") or STREAM_MODE,  # parts from before the mode: the stream's
        )
        for row in frame.iter_rows(named=True)
    ]


def read_paired(directory: Path) -> pl.DataFrame:
    """Every recorded shadow pair, once per order, serving path and pairing of versions, by
    delivery time."""
    parts = sorted((directory / "shadow").glob("part-*.parquet"))
    if not parts:
        return paired_frame([])
    frame = pl.concat([pl.read_parquet(p) for p in parts], how="diagonal_relaxed")
    if "mode" not in frame.columns:
        frame = frame.with_columns(mode=pl.lit(STREAM_MODE))
    frame = frame.with_columns(pl.col("mode").fill_null(STREAM_MODE))
    keys = ["order_id", "model_name", "champion_version", "challenger_version", "mode"]
    return frame.unique(keys, keep="last", maintain_order=True).sort("delivered_at")


def frame_to_joined(frame: pl.DataFrame) -> list[Joined]:
    """Rows written by ``joined_frame`` back as pairs (the monitor restores its windows)."""
    names = [n for n in feature_names() if n in frame.columns]
    out: list[Joined] = []
    for row in frame.iter_rows(named=True):
        features = (
            {n: float(row[n]) for n in names if row[n] is not None} if row["has_features"] else None
        )
        fresh = row["feature_freshness_s"]
        low, high = row.get("predicted_duration_p10_s"), row.get("predicted_duration_p90_s")
        out.append(
            Joined(
                order_id=row["order_id"],
                model_name=row["model_name"],
                model_version=row["model_version"],
                market_id=row["market_id"],
                store_id=row["store_id"],
                created_ms=_ms(row["created_at"]),
                served_ms=_ms(row["served_at"]),
                delivered_ms=_ms(row["delivered_at"]),
                predicted_s=float(row["predicted_duration_s"]),
                freshness_s=math.nan if fresh is None else float(fresh),
                features=features,
                p10_s=math.nan if low is None else float(low),  # parts from before the range
                p90_s=math.nan if high is None else float(high),
            )
        )
    return out


def joined_to_predictions(pairs: Sequence[Joined]) -> list[DeliveryPrediction]:
    """The predictions behind joined pairs, for restoring the drift windows."""
    out = []
    for p in pairs:
        created = datetime.fromtimestamp(p.created_ms / 1000, UTC)
        out.append(
            DeliveryPrediction.model_construct(
                order_id=p.order_id,
                store_id=p.store_id,
                market_id=p.market_id,
                created_at=created,
                predicted_duration_s=p.predicted_s,
                predicted_duration_p10_s=p.p10_s if p.has_range else None,
                predicted_duration_p90_s=p.p90_s if p.has_range else None,
                predicted_delivery_at=created,
                model_name=p.model_name,
                model_version=p.model_version,
                mode=STREAM_MODE,
                served_at=datetime.fromtimestamp(p.served_ms / 1000, UTC),
                feature_freshness_s=None if math.isnan(p.freshness_s) else p.freshness_s,
                features=p.features,
            )
        )
    return out


def _ms(value: datetime) -> int:
    return round(value.timestamp() * 1000)


class JoinedLog:
    """Buffers joined pairs and writes them as Parquet parts, keeping at most ``keep_rows``
    (``name`` "shadow" and ``frame`` ``paired_frame`` for the shadow records)."""

    def __init__(
        self,
        directory: Path,
        keep_rows: int,
        name: str = "joined",
        frame: Callable[[Sequence[Any]], pl.DataFrame] = joined_frame,
    ) -> None:
        self.directory = directory / name
        self.keep_rows = keep_rows
        self._frame = frame
        self._buffer: list[Any] = []
        self._seq = 0

    def append(self, pairs: Sequence[Joined] | Sequence[PairedJoined]) -> None:
        self._buffer.extend(pairs)

    def flush(self) -> Path | None:
        """Write what is buffered as one part (atomically), then drop the oldest parts."""
        if not self._buffer:
            return None
        self.directory.mkdir(parents=True, exist_ok=True)
        frame = self._frame(self._buffer)
        first = min(p.delivered_ms for p in self._buffer)
        self._seq += 1
        path = (
            self.directory / f"part-{first:013d}-{datetime.now(UTC):%H%M%S%f}-{self._seq}.parquet"
        )
        tmp = path.with_suffix(".tmp")
        frame.write_parquet(tmp)
        tmp.replace(path)
        self._buffer.clear()
        self._prune()
        return path

    def _prune(self) -> None:
        parts = sorted(self.directory.glob("part-*.parquet"), reverse=True)
        kept = 0
        for part in parts:
            if kept >= self.keep_rows:
                part.unlink(missing_ok=True)
                continue
            kept += pq.ParquetFile(part).metadata.num_rows


def read_joined(directory: Path, since: datetime | None = None) -> pl.DataFrame:
    """Every recorded joined pair (delivered at or after ``since``), by delivery time."""
    parts = sorted((directory / "joined").glob("part-*.parquet"))
    if not parts:
        return joined_frame([])
    frame = pl.concat([pl.read_parquet(p) for p in parts], how="diagonal_relaxed")
    if since is not None:
        frame = frame.filter(pl.col("delivered_at") >= since)
    return frame.unique(["order_id", "model_name"], keep="last", maintain_order=True).sort(
        "delivered_at"
    )


def write_summaries(directory: Path, summaries: Sequence[MonitorSummary]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    payload = [s.model_dump(mode="json") for s in summaries]
    atomic_write(directory / "summaries.json", orjson.dumps(payload))


def read_summaries(directory: Path) -> list[MonitorSummary]:
    path = directory / "summaries.json"
    if not path.is_file():
        return []
    return [MonitorSummary.model_validate(s) for s in orjson.loads(path.read_bytes())]

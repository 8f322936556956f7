"""``eta predict batch``: every active store × the next K hour slots, scored and published.

Stores are processed in chunks: synthetic orders from the profiles, feature rows from the
stream's state (``slots.slot_rows``, read in small script calls so Redis never blocks the
stream for long), one ``predict`` per chunk, the stream's encoder with ``mode="batch"``, and
the chunk's per-store JSON written into the run's (still invisible) Redis hash. After the last
chunk the Parquet directory is moved into place and then the Redis pointer swapped: a reader
sees the previous run until the new one is whole, in both stores. A failed run removes what it
wrote and leaves the previous run current.
"""

from __future__ import annotations

import math
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import polars as pl
import redis

from predictor.api.predict import MAX_DURATION_S
from predictor.batch_scoring.profiles import BASKET_FIELDS, profile_order
from predictor.batch_scoring.slots import batch_order_id, slot_orders, slot_rows
from predictor.batch_scoring.store import BatchPredictionStore
from predictor.models.artifact import atomic_write
from predictor.serving.encoding import encode_prediction
from predictor.serving.pipeline import ScoringModel
from stream_features.contract import OrderCreated, to_ms

__all__ = ["BatchRun", "new_version", "run_batch"]

_STAGES = ("orders", "features", "scoring", "encoding", "redis", "parquet")


@dataclass
class BatchRun:
    """What a run did: the summary ``eta predict batch`` prints and writes as summary.json."""

    version: str
    as_of: datetime
    slots: int
    model_name: str
    model_version: str
    backend: str | None
    stores: int = 0
    rows: int = 0
    skipped_stores: int = 0
    seconds: float = 0.0
    parquet_dir: Path | None = None
    redis_key: str | None = None
    dropped_versions: list[str] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(_STAGES, 0.0))

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "as_of": self.as_of,
            "slots": self.slots,
            "stores": self.stores,
            "rows": self.rows,
            "skipped_stores": self.skipped_stores,
            "seconds": round(self.seconds, 3),
            "rows_per_s": round(self.rows_per_s, 1),
            "model_name": self.model_name,
            "model_version": self.model_version,
            "backend": self.backend,
            "parquet_dir": str(self.parquet_dir) if self.parquet_dir else None,
            "redis_key": self.redis_key,
            "dropped_versions": self.dropped_versions,
            "stage_seconds": {k: round(v, 3) for k, v in self.stage_seconds.items()},
        }


def new_version(now: datetime) -> str:
    """A run id that sorts by time and never collides: ``20260101T120000.123Z-1a2b3c``."""
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}.{now.microsecond // 1000:03d}Z-{uuid.uuid4().hex[:6]}"


@dataclass
class _Chunk:
    stores: list[tuple[str, bytes]]
    frame: pl.DataFrame
    skipped: int


@contextmanager
def _stage(run: BatchRun, name: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        run.stage_seconds[name] += time.perf_counter() - started


def _usable(duration: float) -> bool:
    return math.isfinite(duration) and duration <= MAX_DURATION_S


def _fresh(age_s: float) -> float | None:
    """The stream's rule: NaN (no state yet) is left out, a negative age is 0."""
    return None if math.isnan(age_s) else max(age_s, 0.0)


def _basket(profile: dict[str, Any]) -> dict[str, Any]:
    return {
        "store_category": profile["store_category"],
        "order_protocol": profile["order_protocol"],
        **{f: profile[f] for f in BASKET_FIELDS},
    }


def _orders(profiles: list[dict[str, Any]], run: BatchRun) -> list[OrderCreated]:
    templates = [profile_order(p, batch_order_id(p["store_id"], 0), run.as_of) for p in profiles]
    return slot_orders(templates, run.slots)


def _read(
    client: redis.Redis, orders: list[OrderCreated], slots: int, key_prefix: str, read_stores: int
) -> tuple[npt.NDArray[np.float64], list[float], float]:
    """Rows and freshness of a chunk's orders, in script calls of ``read_stores`` stores."""
    started = time.perf_counter()
    step = read_stores * slots
    parts = [
        slot_rows(client, orders[i : i + step], slots, key_prefix=key_prefix)
        for i in range(0, len(orders), step)
    ]
    values = np.concatenate([p.values for p in parts])
    freshness = np.concatenate([p.freshness_s for p in parts]).tolist()
    return values, freshness, time.perf_counter() - started


def _encode(
    profiles: list[dict[str, Any]],
    orders: list[OrderCreated],
    durations: list[float],
    freshness: list[float],
    model: ScoringModel,
    run: BatchRun,
    served_at: datetime,
) -> _Chunk:
    """Each store's JSON (its K predictions as the stream encodes them) and the Parquet rows."""
    k = run.slots
    stores: list[tuple[str, bytes]] = []
    keep: list[int] = []
    skipped = 0
    for i, profile in enumerate(profiles):
        block = range(i * k, (i + 1) * k)
        if not all(_usable(durations[j]) for j in block):
            skipped += 1  # the stream would dead-letter these: leave the store out
            continue
        predictions = [
            orjson.Fragment(
                encode_prediction(
                    orders[j],
                    max(durations[j], 0.0),
                    model_name=model.name,
                    model_version=model.version,
                    served_at=served_at,
                    feature_freshness_s=_fresh(freshness[j]),
                    mode="batch",
                )
            )
            for j in block
        ]
        store_json = {
            "store_id": profile["store_id"],
            "market_id": profile["market_id"],
            "batch_version": run.version,
            "as_of": run.as_of,
            "basket": _basket(profile),
            "predictions": predictions,
        }
        stores.append((profile["store_id"], orjson.dumps(store_json, option=orjson.OPT_UTC_Z)))
        keep.extend(block)
    frame = _frame(orders, keep, durations, freshness, model, run)
    return _Chunk(stores, frame, skipped)


def _frame(
    orders: list[OrderCreated],
    keep: list[int],
    durations: list[float],
    freshness: list[float],
    model: ScoringModel,
    run: BatchRun,
) -> pl.DataFrame:
    """The Parquet rows of the kept predictions (row ``j`` is store ``j // K``, slot ``j % K``)."""
    k = run.slots
    rows = np.asarray(keep, dtype=np.int64)
    slot = rows % k
    created_ms = to_ms(run.as_of) + slot * 3_600_000
    seconds = np.maximum(np.asarray(durations, dtype=np.float64)[rows], 0.0)
    fresh = np.asarray(freshness, dtype=np.float64)[rows]
    kept = [orders[j] for j in keep]
    return pl.DataFrame(
        {
            "store_id": [o.store_id for o in kept],
            "market_id": [o.market_id for o in kept],
            "slot": slot.astype(np.int16),
            "order_id": [o.order_id for o in kept],
            "created_ms": created_ms,
            "predicted_duration_s": seconds,
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
        pl.from_epoch("delivery_ms", "ms")
        .dt.replace_time_zone("UTC")
        .alias("predicted_delivery_at"),
        pl.col("feature_freshness_s").fill_nan(None).clip(lower_bound=0.0),
        pl.lit(model.name).alias("model_name"),
        pl.lit(model.version).alias("model_version"),
        pl.lit(run.version).alias("batch_version"),
    )


def _chunks(profiles: pl.DataFrame, size: int) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, profiles.height, size):
        yield profiles.slice(start, size).to_dicts()


def _write_parquet(
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


def run_batch(
    client: redis.Redis | None,
    profiles: pl.DataFrame,
    model: ScoringModel,
    *,
    as_of: datetime,
    slots: int,
    out_dir: Path | None,
    key_prefix: str = "",
    chunk_stores: int = 5000,
    read_stores: int = 500,
    progress: Callable[[int], None] | None = None,
    version: str | None = None,
    feature_client: redis.Redis | None = None,
) -> BatchRun:
    """Score every profile's store at ``slots`` hour slots from ``as_of`` and publish the run.

    ``client`` receives the predictions (None: Parquet only); features are read through
    ``feature_client`` (default ``client``; one of them is needed). ``progress`` is called
    with the number of stores done after each chunk.
    """
    reader = feature_client or client
    if reader is None:
        raise ValueError("a Redis client is needed to read the feature state")
    if slots < 1:
        raise ValueError(f"slots must be >= 1, got {slots}")
    started = time.perf_counter()
    served_at = datetime.fromtimestamp(time.time_ns() // 1_000_000 / 1000, UTC)
    run = BatchRun(
        version=version or new_version(served_at),
        as_of=as_of,
        slots=slots,
        model_name=model.name,
        model_version=model.version,
        backend=getattr(model, "backend", None),
    )
    store = BatchPredictionStore(client, key_prefix) if client is not None else None
    frames: list[pl.DataFrame] = []

    def finish(chunk_profiles: list[dict[str, Any]], orders: list[OrderCreated], read: Any) -> None:
        values, freshness, read_s = read.result()
        run.stage_seconds["features"] += read_s
        with _stage(run, "scoring"):
            durations = np.asarray(model.predict(values), dtype=np.float64).reshape(-1).tolist()
        with _stage(run, "encoding"):
            chunk = _encode(chunk_profiles, orders, durations, freshness, model, run, served_at)
        if store is not None:
            with _stage(run, "redis"):
                store.write(run.version, chunk.stores)
        frames.append(chunk.frame)
        run.stores += len(chunk.stores)
        run.rows += chunk.frame.height
        run.skipped_stores += chunk.skipped
        if progress is not None:
            progress(len(chunk_profiles))

    # The next chunk's feature reads (mostly Redis time) overlap this chunk's scoring and
    # encoding (Python time); a thread is enough, the socket wait releases the GIL.
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="batch-features") as pool:
            pending = None
            for chunk_profiles in _chunks(profiles, chunk_stores):
                with _stage(run, "orders"):
                    orders = _orders(chunk_profiles, run)
                read = pool.submit(_read, reader, orders, slots, key_prefix, read_stores)
                if pending is not None:
                    finish(*pending)
                pending = (chunk_profiles, orders, read)
            if pending is not None:
                finish(*pending)
        if out_dir is not None:
            with _stage(run, "parquet"):
                run.parquet_dir = _write_parquet(out_dir, run, frames, profiles)
        if store is not None:
            with _stage(run, "redis"):
                run.dropped_versions = store.publish(run.version)
            run.redis_key = store.key(run.version)
    except BaseException:
        if store is not None and run.redis_key is None:
            store.discard(run.version)
        if run.parquet_dir is not None and (store is None or run.redis_key is None):
            shutil.rmtree(run.parquet_dir, ignore_errors=True)
            run.parquet_dir = None
        raise
    run.seconds = time.perf_counter() - started
    if run.parquet_dir is not None:
        summary = orjson.dumps(run.as_dict(), option=orjson.OPT_INDENT_2 | orjson.OPT_UTC_Z)
        atomic_write(run.parquet_dir / "summary.json", summary)
        atomic_write(run.parquet_dir.parent / "CURRENT", run.version.encode())
    return run

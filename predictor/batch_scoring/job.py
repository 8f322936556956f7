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

import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import polars as pl
import redis

from predictor.batch_scoring.parquet import prediction_frame, write_run
from predictor.batch_scoring.profiles import BASKET_FIELDS, profile_order
from predictor.batch_scoring.slots import batch_order_id, slot_orders, slot_rows
from predictor.batch_scoring.store import BatchPredictionStore
from predictor.batch_scoring.summary import BatchRun, new_version
from predictor.errors import OutputWriteError
from predictor.models.artifact import atomic_write
from predictor.serving.encoding import answers
from predictor.serving.pipeline import ScoringModel
from predictor.serving.ranges import predict_with_range, range_columns
from stream_features.contract import OrderCreated

__all__ = ["BatchRun", "new_version", "run_batch"]  # BatchRun, new_version: re-exported


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
    bounds: tuple[list[float | None], list[float | None]],
) -> _Chunk:
    """Each store's JSON (its K predictions as the stream encodes them) and the Parquet rows."""
    k = run.slots
    stores: list[tuple[str, bytes]] = []
    keep: list[int] = []
    skipped = 0
    for i, profile in enumerate(profiles):
        block = slice(i * k, (i + 1) * k)
        encoded = answers(
            orders[block],
            durations[block],
            freshness[block],
            model_name=model.name,
            model_version=model.version,
            served_at=served_at,
            mode="batch",
            lows=bounds[0][block],
            highs=bounds[1][block],
        )
        if any(a is None for a in encoded):
            skipped += 1  # the stream would dead-letter these: leave the store out
            continue
        predictions = [orjson.Fragment(a) for a in encoded if a is not None]
        store_json = {
            "store_id": profile["store_id"],
            "market_id": profile["market_id"],
            "batch_version": run.version,
            "as_of": run.as_of,
            "basket": _basket(profile),
            "predictions": predictions,
        }
        stores.append((profile["store_id"], orjson.dumps(store_json, option=orjson.OPT_UTC_Z)))
        keep.extend(range(i * k, (i + 1) * k))
    frame = prediction_frame(orders, keep, durations, freshness, model, run, bounds)
    return _Chunk(stores, frame, skipped)


def _chunks(profiles: pl.DataFrame, size: int) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, profiles.height, size):
        yield profiles.slice(start, size).to_dicts()


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
            point, ranges = predict_with_range(model, values)
            durations = point.tolist()
        with _stage(run, "encoding"):
            bounds = range_columns(ranges, len(durations))
            chunk = _encode(
                chunk_profiles, orders, durations, freshness, model, run, served_at, bounds
            )
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
                run.parquet_dir = write_run(out_dir, run, frames, profiles)
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
        target = run.parquet_dir / "summary.json"
        try:
            atomic_write(target, summary)
            target = run.parquet_dir.parent / "CURRENT"
            atomic_write(target, run.version.encode())
        except OSError as exc:  # each is a temporary file replaced whole: the old one stands
            raise OutputWriteError.of(target, exc) from exc
    return run

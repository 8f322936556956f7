"""Batch prediction: every active store × the next hour slots, precomputed and published.

``profiles`` picks the stores and the typical order of each, ``slots`` builds their feature
rows from the stream's state with the online read, ``job`` scores and publishes a run, and
``store`` is the Redis side the HTTP API reads. See docs/serving.md.
"""

from __future__ import annotations

from predictor.batch_scoring.job import BatchRun, new_version, run_batch
from predictor.batch_scoring.profiles import orders_frame, profile_order, store_profiles
from predictor.batch_scoring.slots import batch_order_id, slot_orders, slot_rows, slot_times
from predictor.batch_scoring.store import BatchPredictionStore

__all__ = [
    "BatchPredictionStore",
    "BatchRun",
    "batch_order_id",
    "new_version",
    "orders_frame",
    "profile_order",
    "run_batch",
    "slot_orders",
    "slot_rows",
    "slot_times",
    "store_profiles",
]

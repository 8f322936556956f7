"""Point-in-time training sets: every historical order's row as the stream would have seen it.

The log is replayed in its own order through ``ReplayState`` (the streaming rules, in memory),
so streaming features are exactly what the worker computes; batch features come from the
materialisation before the order — one per UTC day, built only from deliveries known by then.
The label is the order's own outcome, joined afterwards, so it can never leak into a feature.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from stream_features.batch import compute_batch_tables, deliveries_frame, tables_as_dict
from stream_features.contract import Event, to_ms
from stream_features.definitions import feature_names
from stream_features.event_log import LogLine, iter_log
from stream_features.replay_state import BatchTable, ReplayState

__all__ = ["DailyBatchReplay", "LoadedLog", "build_training_set", "day_start", "load_log"]

DAY_MS = 86_400_000


def day_start(ts_ms: int) -> datetime:
    """The UTC midnight at or before ``ts_ms``: when that day's batch features were built.

    >>> day_start(1767268800000).isoformat()
    '2026-01-01T00:00:00+00:00'
    """
    return datetime.fromtimestamp((ts_ms - ts_ms % DAY_MS) / 1000, tz=UTC)


@dataclass
class LoadedLog:
    events: list[Event]
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)


def load_log(
    path: str | Path,
    *,
    strict: bool = False,
    on_line: Callable[[LogLine], None] | None = None,
) -> LoadedLog:
    """Every valid event of a log in order (those with data-quality findings included, unless
    ``strict``), and the lines rejected with their reasons; ``on_line`` sees every line."""
    loaded = LoadedLog(events=[])
    for line in iter_log(path, strict=strict):
        if on_line is not None:
            on_line(line)
        if line.event is not None:
            loaded.events.append(line.event)
        else:
            loaded.rejected.append((line.line_no, str(line.error)))
    return loaded


class DailyBatchReplay(ReplayState):
    """A replay whose batch features switch at each UTC midnight, as materialised then."""

    def __init__(self, delivered: pl.DataFrame, *, lateness_s: int = 300) -> None:
        super().__init__(lateness_s=lateness_s)
        self._delivered = delivered
        self._days: dict[int, BatchTable] = {}

    def batch_at(self, ts: int) -> BatchTable:
        day = ts - ts % DAY_MS
        if day not in self._days:
            self._days[day] = tables_as_dict(compute_batch_tables(self._delivered, day_start(ts)))
        return self._days[day]


def build_training_set(
    events: list[Event],
    *,
    lateness_s: int = 300,
    since: datetime | None = None,
    until: datetime | None = None,
) -> pl.DataFrame:
    """One row per delivered order: ids, ``created_at``, every feature, ``actual_duration_s``.

    With ``since``, only orders created at or after it get a row; every event before it still
    builds the state (a history's first hours, whose windows are still filling, are left out).
    With ``until``, only orders created before it: a history's last orders are labelled only
    if they were delivered before it ends, the quick ones, so their rows are a biased sample
    (of fast stores and quiet moments) unless the history runs on long enough after them.
    """
    orders = [e for e in events if e.type == "OrderCreated"]
    deliveries = [e for e in events if e.type == "OrderDelivered"]
    delivered = deliveries_frame(orders, deliveries)
    replay = DailyBatchReplay(delivered, lateness_s=lateness_s)
    rows = replay.update_and_read(events)
    frame = pl.DataFrame(
        {
            "order_id": [o.order_id for o in rows.orders],
            "store_id": [o.store_id for o in rows.orders],
            "market_id": [o.market_id for o in rows.orders],
            "store_category": [o.store_category for o in rows.orders],
            "created_at": pl.Series([to_ms(o.created_at) for o in rows.orders], dtype=pl.Int64)
            .cast(pl.Datetime("ms", time_zone="UTC"))
            .cast(pl.Datetime("us", time_zone="UTC")),
        }
    )
    values = rows.values if len(rows) else np.empty((0, len(feature_names())))
    features = pl.DataFrame(
        {name: values[:, j] for j, name in enumerate(feature_names())},
        schema={name: pl.Float64 for name in feature_names()},
    )
    labels = delivered.select("order_id", pl.col("duration_s").alias("actual_duration_s"))
    rows_frame = pl.concat([frame, features], how="horizontal")
    if since is not None:
        rows_frame = rows_frame.filter(pl.col("created_at") >= since)
    if until is not None:
        rows_frame = rows_frame.filter(pl.col("created_at") < until)
    return rows_frame.unique("order_id", keep="first", maintain_order=True).join(
        labels, on="order_id", how="inner", maintain_order="left"
    )

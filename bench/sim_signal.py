"""How much streaming state matters on the simulator's data: LightGBM with vs without load.

Generates a history with the simulator, reads it back from the Parquet event log with polars,
and builds, per delivered order:

* order features (basket, estimates, protocol, category, market, hour, weekday) and the
  store's mean duration over the training period (a batch feature);
* load features, what the streaming path keeps: the store's orders in the last 10 and 30
  minutes, the market's orders in the last 10 minutes, and from the latest supply snapshot the
  busy ratio and outstanding orders per on-shift dasher.

Both models train on the first days and are scored on the last ``--holdout-days`` (a later
holdout, so time leaks nothing forward). Also times the simulator and the log.

    python -m bench.sim_signal                 # 14 days, seed 0
    python -m bench.sim_signal --days 21 --seed 3

Prints a table and writes ``bench/results/sim_signal.json``.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import orjson
import polars as pl
from rich.console import Console
from rich.table import Table

from producers.config import SimConfig
from producers.history import write_history
from producers.simulator import Marketplace
from stream_features.event_log import iter_log

RESULTS = Path(__file__).parent / "results" / "sim_signal.json"
END = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday: the history is whole weeks

ORDER_COLS = [
    "total_items",
    "subtotal",
    "num_distinct_items",
    "min_item_price",
    "max_item_price",
    "estimated_order_place_duration_s",
    "estimated_store_to_consumer_driving_duration_s",
    "order_protocol",
    "category",
    "market",
    "hour",
    "weekday",
    "store_mean_s",
]
LOAD_COLS = [
    "store_orders_10m",
    "store_orders_30m",
    "market_orders_10m",
    "busy_ratio",
    "outstanding_per_dasher",
]


def _windows(orders: pl.DataFrame, key: str, minutes: int, name: str) -> pl.DataFrame:
    """Orders of the same ``key`` in the ``minutes`` before each order (itself excluded)."""
    counts = (
        orders.sort(key, "created_at")
        .rolling("created_at", period=f"{minutes}m", closed="left", group_by=key)
        .agg(pl.len().alias(name))
        .unique([key, "created_at"])
    )
    return orders.join(counts, on=[key, "created_at"], how="left")


def build_frame(log: Path) -> pl.DataFrame:
    """One row per delivered order: its features and ``duration_s``, from the event log."""
    events = pl.read_parquet(log)
    orders = events.filter(pl.col("type") == "OrderCreated").drop(  # other messages' columns
        "at", "delivered_at", "picked_up_at", "onshift_dashers", "busy_dashers"
    )
    delivered = events.filter(pl.col("type") == "OrderDelivered").select("order_id", "delivered_at")
    snaps = (
        events.filter(pl.col("type") == "MarketSupplySnapshot")
        .select(
            "market_id",
            pl.col("at").alias("snap_at"),
            (pl.col("busy_dashers") / pl.col("onshift_dashers")).alias("busy_ratio"),
            (pl.col("outstanding_orders") / pl.col("onshift_dashers")).alias(
                "outstanding_per_dasher"
            ),
        )
        .sort("market_id", "snap_at")
    )
    orders = _windows(orders, "store_id", 10, "store_orders_10m")
    orders = _windows(orders, "store_id", 30, "store_orders_30m")
    orders = _windows(orders, "market_id", 10, "market_orders_10m")
    orders = orders.sort("market_id", "created_at").join_asof(
        snaps,
        left_on="created_at",
        right_on="snap_at",
        by="market_id",
        strategy="backward",
        check_sortedness=False,  # sorted by (market, time) above
    )
    return (
        orders.join(delivered, on="order_id", how="inner")
        .with_columns(
            pl.col("store_orders_10m", "store_orders_30m", "market_orders_10m").fill_null(0),
            duration_s=(pl.col("delivered_at") - pl.col("created_at")).dt.total_seconds(),
            hour=pl.col("created_at").dt.hour(),
            weekday=pl.col("created_at").dt.weekday(),
            category=pl.col("store_category").rank("dense"),
            market=pl.col("market_id").rank("dense"),
        )
        .sort("created_at")
    )


def _fit_predict(
    train: pl.DataFrame, test: pl.DataFrame, cols: list[str], seed: int
) -> np.ndarray[Any, np.dtype[np.float64]]:
    params = {
        "objective": "l1",
        "learning_rate": 0.05,
        "num_leaves": 63,
        "min_data_in_leaf": 50,
        "feature_fraction": 0.9,
        "verbose": -1,
        "seed": seed,
        "num_threads": 2,
    }
    data = lgb.Dataset(train.select(cols).to_numpy(), train["duration_s"].to_numpy())
    booster = lgb.train(params, data, num_boost_round=400)
    return np.asarray(booster.predict(test.select(cols).to_numpy()), dtype=np.float64)


def _timed_history(
    start: datetime, config: SimConfig, seed: int
) -> tuple[pl.DataFrame, dict[str, int], dict[str, float]]:
    """Simulate, write the Parquet log, read it back and build the feature frame, timing each:
    the frame, the events written by type, and the timings (seconds and rates)."""
    t0 = time.perf_counter()
    simulated = sum(1 for _ in Marketplace(config, seed).events(start, END))
    simulate_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "history.parquet"
        t0 = time.perf_counter()
        counts = write_history(log, start, END, config, seed)
        write_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        read = sum(1 for _ in iter_log(log))
        read_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        frame = build_frame(log)
        features_s = time.perf_counter() - t0
    timings = {
        "simulated": simulated,
        "simulate_only_s": simulate_s,
        "simulate_only_events_per_s": simulated / simulate_s,
        "simulate_and_write_parquet_s": write_s,
        "simulate_and_write_events_per_s": sum(counts.values()) / write_s,
        "iter_log_rows_per_s": read / read_s,
        "polars_features_s": features_s,
    }
    return frame, dict(counts), timings


def _holdout_maes(
    frame: pl.DataFrame, cut: datetime, seed: int
) -> tuple[dict[str, float], int, int]:
    """Holdout MAE of the train median and of LightGBM without and with the load features
    (train before ``cut``, test after); with the train and holdout order counts."""
    train = frame.filter(pl.col("created_at") < cut)
    store_mean = train.group_by("store_id").agg(pl.col("duration_s").mean().alias("store_mean_s"))
    frame = frame.join(store_mean, on="store_id", how="left")
    train = frame.filter(pl.col("created_at") < cut)
    test = frame.filter(pl.col("created_at") >= cut)
    truth = test["duration_s"].to_numpy()
    rows: dict[str, float] = {}
    rows["train median (no model)"] = float(np.mean(np.abs(truth - train["duration_s"].median())))
    without = _fit_predict(train, test, ORDER_COLS, seed)
    rows["LightGBM without load features"] = float(np.mean(np.abs(truth - without)))
    with_load = _fit_predict(train, test, ORDER_COLS + LOAD_COLS, seed)
    rows["LightGBM with load features"] = float(np.mean(np.abs(truth - with_load)))
    return rows, train.height, test.height


def _show(args: argparse.Namespace, result: dict[str, Any], timings: dict[str, float]) -> None:
    rows = result["mae_s"]
    table = Table(title=f"holdout MAE, last {args.holdout_days:g} of {args.days:g} days")
    table.add_column("model")
    table.add_column("MAE (s)", justify="right")
    table.add_column("MAE (min)", justify="right")
    for name, mae in rows.items():
        table.add_row(name, f"{mae:,.0f}", f"{mae / 60:.2f}")
    console = Console()
    console.print(table)
    console.print(
        f"load features cut MAE by {result['mae_reduction_with_load']:.1%}; "
        f"{result['train_orders']:,} train / {result['holdout_orders']:,} holdout orders\n"
        f"simulated {timings['simulated']:,} events in {timings['simulate_only_s']:.1f}s"
        f" ({timings['simulate_only_events_per_s']:,.0f}/s); with the Parquet log"
        f" {timings['simulate_and_write_parquet_s']:.1f}s"
        f" ({timings['simulate_and_write_events_per_s']:,.0f}/s); read back and validated"
        f" {timings['iter_log_rows_per_s']:,.0f} rows/s"
    )
    console.print(f"wrote {RESULTS}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=14)
    parser.add_argument("--holdout-days", type=float, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    frame, counts, timings = _timed_history(END - timedelta(days=args.days), SimConfig(), args.seed)
    cut = END - timedelta(days=args.holdout_days)
    rows, train_orders, holdout_orders = _holdout_maes(frame, cut, args.seed)
    gain = 1 - rows["LightGBM with load features"] / rows["LightGBM without load features"]
    result = {
        "days": args.days,
        "holdout_days": args.holdout_days,
        "seed": args.seed,
        "events": counts,
        "train_orders": train_orders,
        "holdout_orders": holdout_orders,
        "mae_s": rows,
        "mae_reduction_with_load": gain,
        **{k: v for k, v in timings.items() if k != "simulated"},
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "lightgbm": version("lightgbm"),
            "polars": version("polars"),
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    _show(args, result, timings)


if __name__ == "__main__":
    main()

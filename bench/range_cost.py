"""What the ETA range and its reasons cost the stream: scoring + encoding µs per order, range on
vs off, and with the reasons (``ETA_STREAM_EXPLAIN``, always scored by LightGBM).

The stream core's per-batch work after the feature read, in process: one vectorised predict
(the point alone, or the point and both bounds through ``predict_with_range``) over a batch of
rows, then the fast encoder for each order. Batches of 1000 rows (the worker's
``ETA_BATCH_MAX_EVENTS``) and of 1 (an online request), LightGBM and lleaves.

    python -m bench.range_cost --artifact models/eta/3      # an artifact with a range

Prints a table; writes nothing.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from predictor.models.artifact import EtaModel, load_artifact
from predictor.models.compiled import compile_model, lleaves_version, parity_sample
from predictor.serving.encoding import encode_prediction
from predictor.serving.explain import explanations
from predictor.serving.ranges import predict_with_range, range_columns
from stream_features.contract import OrderCreated


def _step(
    model: EtaModel, order: OrderCreated, with_range: bool, explain: bool = False
) -> Callable[[np.ndarray], int]:
    served_at = datetime.now(UTC)

    def run(values: np.ndarray) -> int:
        reasons = explanations(model, values) if explain else None
        if with_range:
            point, bounds = predict_with_range(model, values)
            lows, highs = range_columns(bounds, len(point))
        else:
            point = model.predict(values)
            lows = highs = [None] * len(point)
        out = [
            encode_prediction(
                order,
                d,
                model_name=model.name,
                model_version=model.version,
                served_at=served_at,
                feature_freshness_s=1.0,
                p10_s=lows[i],
                p90_s=highs[i],
                explanation=None if reasons is None else reasons[i],
            )
            for i, d in enumerate(point.tolist())
        ]
        return len(out)

    return run


def _us_per_order(run: Callable[[np.ndarray], int], rows: np.ndarray, size: int, n: int) -> float:
    batches = [rows[i : i + size] for i in range(0, rows.shape[0] - size + 1, size)]
    for b in batches[:5]:
        run(b)
    samples = []
    for i in range(n):
        b = batches[i % len(batches)]
        started = time.perf_counter_ns()
        run(b)
        samples.append((time.perf_counter_ns() - started) / 1000 / size)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", type=Path, required=True)
    parser.add_argument("--repeat", type=int, default=60)
    args = parser.parse_args()
    model = load_artifact(args.artifact)
    if not model.has_range:
        raise SystemExit(f"{args.artifact} has no range: train it with this build")
    engines = {"lightgbm": model}
    if lleaves_version() is not None:
        engines["compiled"] = compile_model(model)
    rows = parity_sample(model, rows=8000, seed=1)
    order = OrderCreated.model_validate_json(
        b'{"order_id":"o1","created_at":"2026-03-01T12:00:00Z","market_id":"m1","store_id":"s1",'
        b'"total_items":3,"subtotal":2500,"num_distinct_items":2}'
    )
    trees = f"{model.metadata['num_trees']} + {model.metadata['range']['lower']['num_trees']}"
    trees += f" + {model.metadata['range']['upper']['num_trees']}"
    table = Table(title=f"scoring + encoding, µs per order (median; trees {trees})")
    for column in ("engine", "batch", "range off", "range on", "cost", "range + reasons"):
        table.add_column(column, justify="right")
    for name, engine in engines.items():
        for size in (1000, 1):
            repeat = args.repeat if size > 1 else args.repeat * 20
            off = _us_per_order(_step(engine, order, False), rows, size, repeat)
            on = _us_per_order(_step(engine, order, True), rows, size, repeat)
            why = _us_per_order(_step(model, order, True, explain=True), rows, size, repeat)
            cost = f"{on / off - 1:+.0%}"
            table.add_row(name, str(size), f"{off:.2f}", f"{on:.2f}", cost, f"{why:.2f}")
    Console().print(table)


if __name__ == "__main__":
    main()

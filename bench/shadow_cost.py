"""What the shadow (ETA_SHADOW_STAGE) costs the stream worker, in process: shadow on vs off.

The worker's per-batch work after the feature read (``score_batch``: predict and encode) over
batches of 1000 rows, alone ("off") and with a ``ShadowStage`` handed every batch ("on": the
primary thread only queues it; the challenger scores and encodes its records on its own thread
and sends them to a sink that keeps nothing). Reported: the primary's µs per order (median of
batches; the shadow thread competes for the GIL and the cores), the shadow thread's own µs per
order, the batches it skipped as busy, and whether the primary bytes were identical.

    python -m bench.shadow_cost                      # two tiny models trained here
    python -m bench.shadow_cost --artifact models/eta/3 --challenger models/eta/4

Prints a table; writes nothing. Run it briefly on a shared machine (``--batches``).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import numpy as np
from prometheus_client import CollectorRegistry
from rich.console import Console
from rich.table import Table

from predictor.models.artifact import EtaModel, load_artifact
from predictor.models.handle import ModelHandle
from predictor.models.shadow import ShadowScorer
from predictor.serving.metrics import StreamMetrics
from predictor.serving.pipeline import BatchResult, DecodedBatch, PipelineConfig, score_batch
from predictor.serving.records import RawRecord
from predictor.serving.shadow_stage import ShadowStage
from stream_features.contract import OrderCreated, encode
from stream_features.definitions import feature_names
from stream_features.vectors import FeatureRows

BATCH = 1000
T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


class _Stage:
    def __init__(self, model: EtaModel) -> None:
        self.model, self.name, self.stage = model, model.name, "staging"

    def peek(self) -> EtaModel:
        return self.model


class _Drop:
    def __init__(self) -> None:
        self.sent = 0

    def send(self, key: bytes, value: bytes) -> bool:
        self.sent += 1
        return True

    def flush(self, timeout_s: float) -> None:
        pass


def _train(tmp: Path, shuffled: bool) -> EtaModel:
    import polars as pl

    from predictor.models.dataset import split_by_time
    from predictor.models.synthetic import LABEL, synthetic_training_set
    from predictor.models.training import TrainConfig
    from predictor.models.workflow import train_to_artifact

    frame = synthetic_training_set(3000, seed=0)
    if shuffled:
        frame = frame.with_columns(pl.col(LABEL).shuffle(seed=7))
    split = split_by_time(frame, feature_names(), 0.2)
    out = tmp / ("shuffled" if shuffled else "model")
    config = TrainConfig(num_boost_round=40, early_stopping_rounds=10, learning_rate=0.1)
    train_to_artifact(split, out, name="eta", training_set="bench", config=config, force=True)
    return load_artifact(out)


def _batches(n: int) -> list[tuple[DecodedBatch, FeatureRows]]:
    from predictor.models.synthetic import synthetic_training_set

    values = synthetic_training_set(BATCH, seed=1).select(feature_names()).to_numpy()
    values = values.astype(np.float64)
    out = []
    for b in range(n):
        orders = [
            OrderCreated(
                order_id=f"b{b}o{i}",
                created_at=T0 + timedelta(milliseconds=i),
                market_id=f"m{i % 10}",
                store_id=f"s{i % 200}",
                total_items=3,
                subtotal=2500,
                num_distinct_items=2,
                min_item_price=500,
                max_item_price=1500,
            )
            for i in range(BATCH)
        ]
        records = [RawRecord(encode(o), "orders", 0, i) for i, o in enumerate(orders)]
        rows = FeatureRows(feature_names(), values, np.full(BATCH, 1.0), orders)
        out.append((DecodedBatch(BatchResult(), list(orders), records), rows))  # type: ignore[arg-type]  # pydantic OrderCreated where the core types wire_decode Structs: same fields, read alike
    return out


def _run(
    model: EtaModel, batches: list[tuple[DecodedBatch, FeatureRows]], shadow: ShadowStage | None
) -> tuple[float, list[list[bytes]]]:
    config = PipelineConfig()
    samples, values = [], []
    now_ms = int(T0.timestamp() * 1000) + 60_000
    for decoded, rows in batches:
        fresh = DecodedBatch(BatchResult(), decoded.events, decoded.order_sources)
        started = time.perf_counter_ns()
        result = score_batch(fresh, rows, model, now_ms=now_ms, config=config)
        if shadow is not None:
            shadow(rows, result)
        samples.append((time.perf_counter_ns() - started) / 1000 / BATCH)
        values.append([r.value for r in result.predictions])
    return statistics.median(samples), values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", type=Path, help="the champion (default: trained here)")
    parser.add_argument("--challenger", type=Path, help="the shadow (default: trained here)")
    parser.add_argument("--batches", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        champion = load_artifact(args.artifact) if args.artifact else _train(Path(tmp), False)
        challenger = load_artifact(args.challenger) if args.challenger else _train(Path(tmp), True)
    batches = _batches(args.batches)
    _run(champion, batches[:5], None)  # warm up
    off_us, off_values = _run(champion, batches, None)
    metrics = StreamMetrics(CollectorRegistry())
    scorer = ShadowScorer(cast(ModelHandle, _Stage(challenger)))
    sink = _Drop()
    stage = ShadowStage(
        scorer, sink, scored=metrics.shadow_predictions, failures=metrics.shadow_failures
    )
    on_us, on_values = _run(champion, batches, stage)
    stage.close()
    alone = []
    for decoded, rows in batches[:20]:
        result = score_batch(
            DecodedBatch(BatchResult(), decoded.events, decoded.order_sources),
            rows,
            champion,
            now_ms=int(T0.timestamp() * 1000) + 60_000,
            config=PipelineConfig(),
        )
        started = time.perf_counter_ns()
        stage.score(rows, result)
        alone.append((time.perf_counter_ns() - started) / 1000 / BATCH)
    busy = metrics.registry.get_sample_value("eta_stream_shadow_failures_total", {"reason": "busy"})
    table = Table(title=f"shadow cost, batches of {BATCH} ({args.batches} batches)")
    for column in ("measure", "value"):
        table.add_column(column, justify="right" if column == "value" else "left")
    rows_out: list[tuple[str, Any]] = [
        ("primary µs/order, shadow off", f"{off_us:.2f}"),
        ("primary µs/order, shadow on", f"{on_us:.2f}"),
        ("primary slowdown", f"{on_us / off_us:.2f}x"),
        ("shadow thread µs/order (alone)", f"{statistics.median(alone):.2f}"),
        ("batches skipped as busy", f"{int(busy or 0)} of {args.batches}"),
        ("shadow records sent", f"{sink.sent}"),
        ("primary bytes identical on/off", str(on_values == off_values)),
    ]
    for measure, value in rows_out:
        table.add_row(measure, value)
    Console().print(table)


if __name__ == "__main__":
    main()

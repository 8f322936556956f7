"""A simulated marketplace where one market loses most of its dashers, scored by a real model.

The design is a controlled experiment. The simulator is run twice with the same seed, with
and without a dasher shortage in market ``m1`` (each market rolls its own dice, so the two
runs are the same event for event until the shock, and in the other market after it). The
model is trained on the run *without* the shock over the same days the monitor then watches,
so its artifact's reference is the healthy marketplace itself: whatever drift and error the
monitor sees in the shocked run beyond the control run is the shock's.

The live hours are scored through the serving core (``process_batch`` over the in-memory
feature replay, the rules the stream worker runs in Redis), with the features included, and
come out as the wire records the worker would produce: predictions keyed by order id, and the
deliveries that are their ground truth, in event-time order.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from predictor.models.artifact import EtaModel, load_artifact
from predictor.models.dataset import split_by_time
from predictor.models.registry import Registry
from predictor.models.training import TrainConfig
from predictor.models.workflow import train_to_artifact
from predictor.serving.pipeline import PipelineConfig, process_batch
from predictor.serving.records import RawRecord
from producers.config import Shock, SimConfig
from producers.simulator import Marketplace
from stream_features.batch import deliveries_frame
from stream_features.contract import Event, OrderCreated, OrderDelivered, encode, event_time, to_ms
from stream_features.definitions import feature_names
from stream_features.point_in_time import DailyBatchReplay, build_training_set

__all__ = [
    "LIVE_START_MS",
    "MODEL_NAME",
    "SHOCK_MARKET",
    "SHOCK_MS",
    "WireRecord",
    "scenario_records",
    "scenario_registry",
    "simulated_events",
    "train_reference_model",
    "wire_records",
]

SHOCK_MARKET = "m1"
START = datetime(2026, 3, 2, tzinfo=UTC)
WARMUP_S = 86400
"""The first day only fills batch features and windows; the monitor watches from day two."""
SHOCK_AT_S = 2 * 86400 + 12 * 3600  # day three, noon UTC: a full drift window after the start
END_S = SHOCK_AT_S + 8 * 3600
TRAIN_END_S = END_S + 12 * 3600
"""The control run goes on past the watched hours, so that its later 20 % (the validation
rows, which the artifact's reference leaves out) lies after them."""
LIVE_START_MS = to_ms(START) + WARMUP_S * 1000
SHOCK_MS = to_ms(START) + SHOCK_AT_S * 1000
END_MS = to_ms(START) + END_S * 1000
FAST = TrainConfig(num_boost_round=150, early_stopping_rounds=20, num_threads=1)
MODEL_NAME = "eta-shock"


@dataclass(frozen=True)
class WireRecord:
    at_ms: int
    topic: str
    """"predictions" or "deliveries"."""
    key: bytes | None
    value: bytes


@functools.cache
def simulated_events(shocked: bool, seed: int = 7) -> tuple[Event, ...]:
    """Two and a half days of a two-market marketplace, with or without the shortage.

    No outliers: one order taking ten times as long would swing an hour's MAE of a market
    by more than the threshold, and this experiment is about the shock.
    """
    shock = Shock(
        market_id=SHOCK_MARKET, kind="dasher_shortage", start_offset_s=SHOCK_AT_S, factor=0.1
    )
    config = SimConfig(
        markets=2,
        stores=200,
        orders_per_day=9000,
        outlier_share=0.0,
        shocks=(shock,) if shocked else (),
    )
    end = START + timedelta(seconds=END_S if shocked else TRAIN_END_S)
    return tuple(Marketplace(config, seed=seed).events(START, end))


def train_reference_model(out_dir: Path, name: str) -> EtaModel:
    """A model (artifact in ``out_dir``) trained on the control run's watched days."""
    rows = build_training_set(list(simulated_events(False)))
    live = rows.filter(pl.col("created_at").dt.epoch("ms") >= LIVE_START_MS)
    split = split_by_time(live, feature_names(), 0.2)
    train_to_artifact(split, out_dir, name=name, training_set="simulated control", config=FAST)
    return load_artifact(out_dir)


def wire_records(model: EtaModel, shocked: bool) -> list[WireRecord]:
    """The watched hours of a run as the worker would publish them, in event-time order."""
    events = [e for e in simulated_events(shocked) if to_ms(event_time(e)) < END_MS]
    cut = next(i for i, e in enumerate(events) if to_ms(event_time(e)) >= LIVE_START_MS)
    orders = [e for e in events if isinstance(e, OrderCreated)]
    delivered = [e for e in events if isinstance(e, OrderDelivered)]
    replay = DailyBatchReplay(deliveries_frame(orders, delivered))
    replay.update_and_read(events[:cut])
    config = PipelineConfig(include_features=True)
    records: list[WireRecord] = []
    live = events[cut:]
    for i in range(0, len(live), 500):
        chunk = live[i : i + 500]
        now_ms = to_ms(event_time(chunk[-1]))
        raw = [RawRecord(encode(e), topic=e.type) for e in chunk]
        result = process_batch(raw, replay, model, now_ms=now_ms, config=config)
        assert not result.dead_letters, result.dead_letters[:1]
        for out, created in zip(result.predictions, result.created_ms, strict=True):
            records.append(WireRecord(created, "predictions", out.key, out.value))
        for e in chunk:
            if isinstance(e, OrderDelivered):
                at = to_ms(e.delivered_at)
                records.append(WireRecord(at, "deliveries", e.store_id.encode(), encode(e)))
    records.sort(key=lambda r: r.at_ms)
    return records


@functools.cache
def scenario_registry() -> Path:
    """A registry (kept for the session) holding the reference model as version 1."""
    root = Path(tempfile.mkdtemp(prefix="eta-monitor-scenario-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    train_reference_model(root / "artifact", MODEL_NAME)
    registry = Registry(root / "models")
    registry.promote(MODEL_NAME, registry.register(root / "artifact"), "production")
    return registry.root


@functools.cache
def scenario_records(shocked: bool) -> tuple[WireRecord, ...]:
    """The watched hours of a run scored by the registered model (cached for the session)."""
    model = Registry(scenario_registry()).load(MODEL_NAME, "1")
    return tuple(wire_records(model, shocked))

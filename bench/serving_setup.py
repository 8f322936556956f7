"""Shared set-up of the serving benchmarks (bench/online.py, bench/batch_predict.py).

A production-sized model (trained once on generated data, compiled once, both cached under
``~/.cache/etastream-bench`` so later runs start in seconds), registered and promoted in a
registry; and a marketplace's last hour applied to Redis the way the stream applies it, with
batch features materialised from the same orders, so every read hits real state.
"""

from __future__ import annotations

import heapq
import random
import shutil
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import redis

from predictor.models.artifact import EtaModel, load_artifact
from predictor.models.compiled import compile_model, lleaves_version
from predictor.models.registry import Registry
from stream_features.batch import compute_batch_tables, deliveries_frame, materialise_redis
from stream_features.contract import Event, MarketSupplySnapshot, OrderCreated, OrderDelivered
from stream_features.redis_windows import RedisFeatureSource

__all__ = ["CACHE", "bench_artifact", "marketplace_hour", "register", "seed_state"]

CACHE = Path.home() / ".cache" / "etastream-bench"
_CATEGORIES = ("pizza", "thai", "sushi", "burgers", "salad", "mexican")


def bench_artifact(
    artifact: Path | None, train_rows: int, max_rounds: int, with_range: bool = True
) -> Path:
    """An artifact directory: the one given, or one trained on generated data (cached), with
    the ETA range unless ``with_range`` is False (to measure what the range costs)."""
    if artifact is not None:
        return artifact
    target = CACHE / f"model-{train_rows}-{max_rounds}{'' if with_range else '-no-range'}"
    if not (target / "checksum.sha256").is_file():
        from predictor.models.dataset import split_by_time
        from predictor.models.synthetic import synthetic_training_set
        from predictor.models.training import TrainConfig
        from predictor.models.workflow import train_to_artifact
        from stream_features.definitions import feature_names

        shutil.rmtree(target, ignore_errors=True)
        split = split_by_time(
            synthetic_training_set(train_rows, seed=0), feature_names(), valid_fraction=0.2
        )
        started = time.perf_counter()
        train_to_artifact(
            split,
            target,
            name="bench",
            training_set="generated",
            config=TrainConfig(num_boost_round=max_rounds),
            force=True,
            with_range=with_range,
        )
        print(f"trained on {train_rows:,} generated rows in {time.perf_counter() - started:.0f} s")
    return target


def register(artifact: Path, registry_dir: Path, name: str = "eta") -> EtaModel:
    """Register ``artifact`` as ``name`` and promote it to production; warm its compiled cache
    (in the registry's copy, which is what services load) and return the loaded model."""
    registry = Registry(registry_dir)
    version = registry.register(artifact, name)
    registry.promote(name, version, "production")
    model = registry.load(name, version)
    if lleaves_version() is not None:
        started = time.perf_counter()
        cached = CACHE / f"compiled-{model.model_sha256[:16]}"
        target = registry.path(name, version) / "compiled"
        if cached.is_dir():
            shutil.copytree(cached, target, dirs_exist_ok=True)
        compiled = compile_model(model)
        if not cached.is_dir():
            shutil.copytree(target, cached)
        print(f"compiled scoring ready in {time.perf_counter() - started:.1f} s")
        return compiled
    return model


def marketplace_hour(
    now: datetime, stores: int, markets: int, orders: int, seed: int = 7
) -> Iterator[Event]:
    """The hour before ``now``: ``orders`` orders spread over ``stores`` stores, most delivered
    20–50 minutes later (if before ``now``), a supply snapshot per market every 30 s."""
    rng = random.Random(seed)
    start = now - timedelta(hours=1)
    spacing = 3600.0 / orders
    due: list[tuple[datetime, int, OrderCreated]] = []
    next_snapshot = 0.0
    for i in range(orders):
        at_s = i * spacing
        while next_snapshot <= at_s:
            for m in range(markets):
                onshift = 150 + rng.randrange(100)
                yield MarketSupplySnapshot.model_construct(
                    type="MarketSupplySnapshot",
                    market_id=f"m{m}",
                    at=start + timedelta(seconds=next_snapshot),
                    onshift_dashers=onshift,
                    busy_dashers=rng.randrange(onshift),
                    outstanding_orders=rng.randrange(300),
                )
            next_snapshot += 30.0
        while due and due[0][0] <= start + timedelta(seconds=at_s):
            due_at, _, created_then = heapq.heappop(due)
            yield OrderDelivered.model_construct(
                type="OrderDelivered",
                order_id=created_then.order_id,
                store_id=created_then.store_id,
                market_id=created_then.market_id,
                delivered_at=due_at,
                picked_up_at=None,
            )
        store = i % stores if i < stores else rng.randrange(stores)
        created = OrderCreated.model_construct(
            type="OrderCreated",
            order_id=f"seed-{i}",
            created_at=start + timedelta(seconds=at_s),
            market_id=f"m{store % markets}",
            store_id=f"s{store}",
            store_category=_CATEGORIES[store % len(_CATEGORIES)],
            order_protocol=1 + store % 5,
            total_items=1 + rng.randrange(6),
            subtotal=800 + rng.randrange(6000),
            num_distinct_items=1,
            min_item_price=300,
            max_item_price=2500,
            estimated_order_place_duration_s=60 + rng.randrange(300),
            estimated_store_to_consumer_driving_duration_s=300 + rng.randrange(1500),
            store_lat=None,
            store_lon=None,
            consumer_lat=None,
            consumer_lon=None,
        )
        yield created
        delivered_at = created.created_at + timedelta(minutes=20 + rng.randrange(30))
        if delivered_at < now:
            heapq.heappush(due, (delivered_at, i, created))


def seed_state(
    client: redis.Redis, now: datetime, *, stores: int, markets: int, orders: int
) -> list[OrderCreated]:
    """Apply ``marketplace_hour`` as the stream would (batches of 1000) and materialise batch
    features from its deliveries; returns the orders (the history store profiles come from)."""
    source = RedisFeatureSource(client)
    created: list[OrderCreated] = []
    delivered: list[OrderDelivered] = []
    batch: list[Event] = []
    started = time.perf_counter()
    for event in marketplace_hour(now, stores, markets, orders):
        batch.append(event)
        if isinstance(event, OrderCreated):
            created.append(event)
        elif isinstance(event, OrderDelivered):
            delivered.append(event)
        if len(batch) == 1000:
            source.update_and_read(batch)
            batch = []
    if batch:
        source.update_and_read(batch)
    tables = compute_batch_tables(deliveries_frame(created, delivered), now)
    materialise_redis(client, tables, "bench")
    print(
        f"state: {len(created):,} orders, {len(delivered):,} deliveries over {stores:,} stores "
        f"applied in {time.perf_counter() - started:.0f} s"
    )
    return created


if __name__ == "__main__":  # pragma: no cover - a smoke run
    print(load_artifact(bench_artifact(None, 20_000, 50)))

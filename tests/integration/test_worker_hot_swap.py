"""Promote and roll back while a worker streams: no order lost, every prediction names the
version that really scored it, and the switch reaches the stream within 2 s each way."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import redis

from predictor.engines.wiring import redis_features
from predictor.models.handle import ModelHandle
from predictor.models.registry import Registry
from stream_features.contract import DeliveryPrediction
from stream_features.definitions import feature_names
from stream_features.kafka_clients import ensure_topics
from stream_features.settings import Settings
from tests.integration.worker_helpers import (
    TopicReader,
    live_orders,
    produce_orders,
    running_worker,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RATE = 1500  # orders/s offered during the swaps
PHASE_S = 3.0  # time on each version: v1, then v2 after the promote, then v1 after the rollback
SWAP_S = 2.0  # the bound: a running consumer uses a new version within 2 s


def _two_versions(settings: Settings, tmp_path: Path, registry: Registry) -> tuple[str, str, str]:
    """Register two different small models under a fresh name; the first is production."""
    import uuid

    from predictor.models.dataset import split_by_time
    from predictor.models.synthetic import synthetic_training_set
    from predictor.models.training import TrainConfig
    from predictor.models.workflow import train_to_artifact

    name = f"eta-swap-{uuid.uuid4().hex[:8]}"
    split = split_by_time(synthetic_training_set(3000, seed=0), feature_names(), 0.2)
    versions = []
    for rounds in (20, 60):
        artifact = tmp_path / f"artifact-{rounds}"
        config = TrainConfig(
            num_boost_round=rounds, early_stopping_rounds=rounds, learning_rate=0.1
        )
        train_to_artifact(
            split, artifact, name=name, training_set="generated", config=config, force=True
        )
        versions.append(registry.register(artifact, name))
    registry.promote(name, versions[0], "production")
    return name, versions[0], versions[1]


def _row(prediction: DeliveryPrediction, names: list[str]) -> list[float]:
    features = prediction.features or {}
    return [features.get(n, math.nan) for n in names]


def test_promote_and_rollback_under_load_switch_versions_without_a_gap(
    settings: Settings, key_prefix: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    settings = settings.model_copy(update={"stream_include_features": True})
    ensure_topics(settings)
    registry = Registry(settings.registry_dir, redis_client)
    name, v1, v2 = _two_versions(settings, tmp_path, registry)
    handle = ModelHandle(registry, name, "production", redis_client, poll_s=0.2)
    features = redis_features(settings, settings.redis_url_value() or "", key_prefix)
    reader = TopicReader(settings, settings.predictions_topic)
    sent: list[tuple[str, float]] = []  # (order id, wall time it was produced)
    moves: dict[str, float] = {}
    done = threading.Event()

    def offer() -> None:
        """Orders at RATE in 10 ms slices; promote after one phase, roll back after two."""
        started, i = time.monotonic(), 0
        while (elapsed := time.monotonic() - started) < 3 * PHASE_S:
            if elapsed >= PHASE_S and "promote" not in moves:
                registry.promote(name, v2, "production")
                moves["promote"] = time.time()
            if elapsed >= 2 * PHASE_S and "rollback" not in moves:
                registry.rollback(name, "production")
                moves["rollback"] = time.time()
            due = int(elapsed * RATE)
            if due > i:
                batch = live_orders(due - i, "hs-", start=i)
                produce_orders(settings, batch)
                now = time.monotonic()
                sent.extend((o.order_id, now) for o in batch)
                i = due
            time.sleep(0.01)  # pacing the offered load, not waiting for a result
        done.set()

    with handle, running_worker(settings, features, handle.current) as worker:
        assert worker.assigned.wait(30), "the worker never got its partitions"
        producer = threading.Thread(target=offer, name="offer", daemon=True)
        producer.start()
        got = reader.read_until(lambda m: done.is_set() and len(m) >= len(sent), timeout_s=60)
        producer.join(5)
    reader.close()

    preds = [DeliveryPrediction.model_validate_json(m.value() or b"") for m in got]
    by_id = {p.order_id: p for p in preds}
    assert len(preds) == len(by_id) == len(sent), "an order was lost or predicted twice"
    assert worker.stats.dead_letters == 0

    # Each prediction was scored by the version it names: re-score its features with both.
    names = feature_names()
    models = {v: registry.load(name, v) for v in (v1, v2)}
    for version, model in models.items():
        mine = [p for p in preds if p.model_version == version]
        assert mine, f"no prediction from version {version}"
        expected = model.predict(np.array([_row(p, names) for p in mine], dtype=np.float64))
        got_s = np.array([p.predicted_duration_s for p in mine])
        assert np.allclose(got_s, np.maximum(expected, 0.0), rtol=0, atol=1e-6)

    # The stream follows the pointer: by the wall clock of scoring, v1 until the promote, v2
    # from at most SWAP_S after it until the rollback, v1 again from SWAP_S after that.
    def versions_served(lo: float, hi: float) -> set[str]:
        return {p.model_version for p in preds if lo <= p.served_at.timestamp() < hi}

    promote, rollback = moves["promote"], moves["rollback"]
    assert versions_served(0, promote) == {v1}
    assert versions_served(promote + SWAP_S, rollback) == {v2}
    assert versions_served(rollback + SWAP_S, math.inf) == {v1}
    runs = [p.model_version for p in sorted(preds, key=lambda p: p.served_at)]
    assert [v for i, v in enumerate(runs) if i == 0 or runs[i - 1] != v] == [v1, v2, v1]
    assert [m.to_version for m in registry.history(name, "production")][-3:] == [v1, v2, v1]

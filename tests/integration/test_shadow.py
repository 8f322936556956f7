"""Done-when of issue #23: champion and challenger on live traffic, on the real broker and Redis.

The worker serves a simulated stream with production (a small real model) and scores every
batch in shadow with staging (the same recipe trained on shuffled labels).
Deliveries come for the orders served; ``eta monitor``'s service joins both versions with them
and reports them side by side on the same orders; ``eta models promote-if-better`` then
decides, with its numbers, and keeps the decision in the registry. Run twice: deliveries
that follow the champion (the challenger is refused) and deliveries that follow the
challenger (it is promoted). (Byte-identical primary predictions are tested in
``tests/unit/predictor/serving/test_shadow_stage.py``.)
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import orjson
import pytest
from typer.testing import CliRunner

from predictor.cli import app
from predictor.engines.wiring import redis_features, shadow_stage
from predictor.models.guard import decisions
from predictor.models.handle import ModelHandle
from predictor.models.registry import Registry
from predictor.monitoring.recording import read_paired, read_summaries
from predictor.monitoring.runner import build_service, record_dir
from predictor.serving.metrics import StreamMetrics
from stream_features.contract import OrderCreated, OrderDelivered, ShadowPrediction, encode
from stream_features.kafka_clients import ensure_topics
from stream_features.settings import Settings
from tests.integration.worker_helpers import (
    TopicReader,
    produce,
    publish_simulated,
    running_worker,
)
from tests.integration.worker_models import register_shuffled, registered_model

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ORDERS = 800


@dataclass
class _Shadowed:
    """What a shadowed run served and recorded, its common checks passed."""

    champion_version: str
    challenger_version: str
    orders: list[OrderCreated]
    served_s: dict[str, float]  # order id -> the duration served
    records: list[ShadowPrediction]
    metrics: StreamMetrics


def _shadowed_run(
    served: Settings, tmp_path: Path, key_prefix: str, n_orders: int, engine: str = "confluent"
) -> _Shadowed:
    """Serve ``n_orders`` simulated orders with production and staging (a challenger trained
    on shuffled labels) in shadow on ``engine``; check that every order was served and shadowed
    once, with what was served to the bit and the challenger's own answers."""
    challenger = register_shuffled(served, tmp_path)
    ensure_topics(served)
    registry = Registry(served.registry_dir)
    champion = registry.load(served.model_name, registry.resolve(served.model_name, "production"))
    metrics = StreamMetrics()
    redis_url = served.redis_url_value()
    assert redis_url is not None
    with ModelHandle(registry, served.model_name, "staging", None, 0.2) as staging:
        shadow = shadow_stage(served, staging, metrics)
        features = redis_features(served, redis_url, key_prefix)
        with running_worker(served, features, champion, metrics, engine, shadow=shadow):
            orders = publish_simulated(served, n_orders)
            predictions = TopicReader(served, served.predictions_topic)
            shadows = TopicReader(served, served.shadow_topic)
            got = predictions.read_until(lambda m: len(m) >= len(orders), 90)
            got_shadow = shadows.read_until(lambda m: len(m) >= len(orders), 30)
            predictions.close()
            shadows.close()
    served_s = {m.key().decode(): orjson.loads(m.value())["predicted_duration_s"] for m in got}
    records = [ShadowPrediction.model_validate_json(m.value()) for m in got_shadow]
    assert len(served_s) == len(orders)
    assert {r.order_id for r in records} == set(served_s)  # none lost on a quiet stack
    assert {(r.champion_version, r.challenger_version) for r in records} == {
        (champion.version, challenger)
    }
    # what the shadow says was served is what was served, to the bit
    assert all(r.champion_predicted_duration_s == served_s[r.order_id] for r in records)
    assert any(
        r.challenger_predicted_duration_s != r.champion_predicted_duration_s for r in records
    )
    assert {r.mode for r in records} == {"streaming"}
    return _Shadowed(champion.version, challenger, orders, served_s, records, metrics)


def test_the_faust_engine_scores_in_shadow_too(
    settings: Settings, tmp_path: Path, key_prefix: str
) -> None:
    """The same stage on the faust engine: a shadow record per served order, with what was
    served to the bit and the challenger's own answer."""
    pytest.importorskip("faust")
    served = registered_model(settings, tmp_path).model_copy(update={"shadow_stage": "staging"})
    _shadowed_run(served, tmp_path, key_prefix, 300, "faust")


@pytest.mark.parametrize("truth_follows", ["champion", "challenger"])
def test_the_monitor_compares_champion_and_challenger_and_the_guard_decides(
    settings: Settings,
    tmp_path: Path,
    key_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    truth_follows: str,
) -> None:
    """``truth_follows``: whose ETA the deliveries follow (±10 %), so which version is really
    the better: the guard refuses the challenger when it is the champion, and promotes the
    challenger when it is the challenger."""
    served = registered_model(settings, tmp_path).model_copy(
        update={
            "shadow_stage": "staging",
            "monitor_group": f"{settings.consumer_group}-monitor",
            "monitor_publish_s": 1.0,
        }
    )
    shadowed = _shadowed_run(served, tmp_path, key_prefix, ORDERS)
    champion_version, challenger = shadowed.champion_version, shadowed.challenger_version
    orders, served_s, records = shadowed.orders, shadowed.served_s, shadowed.records
    metrics = shadowed.metrics
    registry = Registry(served.registry_dir)
    assert metrics.registry.get_sample_value("eta_stream_shadow_predictions_total") == len(orders)

    # deliveries: the truth follows one version's ETA within ±10 % (that one is better)
    followed = (
        served_s
        if truth_follows == "champion"
        else {r.order_id: r.challenger_predicted_duration_s for r in records}
    )
    rng = np.random.default_rng(5)
    latest = datetime.now(UTC) + timedelta(seconds=3000)
    truths = []
    by_id = {o.order_id: o for o in orders}
    for order_id, eta_s in followed.items():
        order = by_id[order_id]
        at = order.created_at + timedelta(seconds=eta_s * rng.uniform(0.9, 1.1))
        if at < latest:
            truths.append(
                OrderDelivered(
                    order_id=order_id,
                    store_id=order.store_id,
                    market_id=order.market_id,
                    delivered_at=at,
                )
            )
    assert len(truths) > 300
    produce(served, ((served.deliveries_topic, t.store_id.encode(), encode(t)) for t in truths))

    service = build_service(served, retrain=False, key_prefix=key_prefix)
    stop, failure = threading.Event(), []

    def run() -> None:
        try:
            service.run(stop)
        except BaseException as exc:  # re-raised below
            failure.append(exc)

    thread = threading.Thread(target=run, name="monitor", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    compared = None
    while time.monotonic() < deadline and not failure:
        day = [s for s in read_summaries(record_dir(served)) if s.window == "24h"]
        if day and day[0].shadow and day[0].shadow[0].orders >= len(truths):
            compared = day[0].shadow[0]
            break
        time.sleep(0.2)
    stop.set()
    thread.join(60)
    assert not failure, failure
    assert compared is not None, "the monitor never compared the two versions on every order"
    assert (compared.champion_version, compared.challenger_version) == (
        champion_version,
        challenger,
    )
    assert compared.orders == len(truths)
    assert compared.champion_mae_s is not None and compared.challenger_mae_s is not None
    assert compared.diff_ci_low_s is not None and compared.diff_ci_high_s is not None
    if truth_follows == "champion":
        assert compared.challenger_mae_s > compared.champion_mae_s
        assert compared.diff_ci_low_s > 0  # the challenger is worse, and the test supports it
    else:
        assert compared.challenger_mae_s < compared.champion_mae_s
        assert compared.diff_ci_high_s < 0
    assert read_paired(record_dir(served)).height == len(truths)

    monkeypatch.setenv("ETA_REGISTRY_DIR", str(served.registry_dir))
    monkeypatch.setenv("ETA_DATA_DIR", str(served.data_dir))
    monkeypatch.setenv("ETA_MODEL_NAME", served.model_name)
    monkeypatch.delenv("ETA_REDIS_URL", raising=False)
    result = CliRunner().invoke(
        app, ["models", "promote-if-better", "--stage", "staging", "--min-orders", "100"]
    )
    (kept,) = decisions(registry, served.model_name)
    assert kept.challenger_version == challenger and kept.evidence["orders"] == len(truths)
    if truth_follows == "champion":
        assert result.exit_code == 2, result.output
        assert "refused" in result.output and "not shown better" in result.output
        assert registry.resolve(served.model_name, "production") == champion_version
        assert kept.outcome == "refused"
    else:
        assert result.exit_code == 0, result.output
        assert "promoted" in result.output
        assert registry.resolve(served.model_name, "production") == challenger
        assert kept.outcome == "promoted"

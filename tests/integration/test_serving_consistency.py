"""Streaming, online and batch give one answer for one order and one feature state.

The stream worker builds the state from real events on the broker. Then, with nothing else
arriving, one probe order is scored three ways, each through its own production code:

* online: ``POST /v1/predictions`` on the app ``eta serve`` runs;
* batch: ``run_batch`` (what ``eta predict batch`` runs) for a store whose profile is the probe
  itself, with ``as_of`` the probe's time, so its slot-0 synthetic order is the probe but for
  the id — the run's stored answer is compared, not a re-implementation of it;
* streaming: the probe produced to the orders topic; the worker reads the state before the
  order (the state the other two read), scores and produces it.

All three agree within 1e-6 s, and their JSON is identical but for ``mode``, ``served_at`` (and
the batch order's synthetic id), the ETA range (p10..p90, from the artifact's bound models)
included; ``GET /v1/predictions/{id}`` returns the streamed bytes. So do they for a probe
without a store category and one with numeric ids (issue #17).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest
import redis

from predictor.batch_scoring import orders_frame, run_batch, store_profiles
from predictor.batch_scoring.store import BatchPredictionStore
from predictor.engines.wiring import redis_features
from predictor.models.registry import Registry
from predictor.serving.latest import LatestPredictions
from stream_features.contract import (
    Event,
    MarketSupplySnapshot,
    OrderCreated,
    encode,
    event_time,
)
from stream_features.kafka_clients import ensure_topics
from stream_features.online import get_online_features
from stream_features.settings import Settings
from tests.feature_events import delivered, order
from tests.integration.api_helpers import api_client, model_settings
from tests.integration.worker_helpers import TopicReader, produce, running_worker

pytestmark = pytest.mark.integration

TOLERANCE_S = 1e-6


def _seed(now: datetime) -> list[Event]:
    """Fifty minutes of orders, deliveries and supply snapshots in two markets, before ``now``."""
    events: list[Event] = []
    for i in range(240):
        at = now - timedelta(minutes=50) + timedelta(seconds=12 * i)
        o = order(f"seed-{i}", at, store=f"s{i % 8}", market=f"m{i % 2}")
        changes = {"total_items": 2 + i % 6, "subtotal": 900 + 210 * (i % 7)}
        o = OrderCreated.model_validate({**o.model_dump(), **changes})
        events.append(o)
        if i % 3 == 0 and at + timedelta(minutes=22) < now:
            events.append(delivered(o, at + timedelta(minutes=22)))
    for minute in (40, 20, 5):
        for m in (0, 1):
            events.append(
                MarketSupplySnapshot(
                    market_id=f"m{m}",
                    at=now - timedelta(minutes=minute),
                    onshift_dashers=30 + 5 * m + minute // 5,
                    busy_dashers=12 + minute // 10,
                    outstanding_orders=9 + m,
                )
            )
    return sorted(events, key=event_time)


def _topic(settings: Settings, event: Event) -> tuple[str, bytes]:
    if isinstance(event, MarketSupplySnapshot):
        return settings.dasher_events_topic, event.market_id.encode()
    if isinstance(event, OrderCreated):
        return settings.orders_topic, event.store_id.encode()
    return settings.deliveries_topic, event.store_id.encode()


def _without(prediction: dict[str, Any], *fields: str) -> dict[str, Any]:
    return {k: v for k, v in prediction.items() if k not in fields}


def _wait(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _probes(now: datetime) -> dict[str, bytes]:
    """The probe orders as wire JSON: a plain one, one without a store category (left out of
    the JSON), and one with numeric ids, as real exports send them. Each is at its own store in
    its own market, so scoring one in the stream moves no state another reads."""
    plain = {
        **orjson.loads(encode(order("probe-1", now, store="s3", market="m1"))),
        "total_items": 4,
        "subtotal": 3150,
        "estimated_order_place_duration_s": 240,
    }
    uncategorised = {**plain, "order_id": "probe-2", "store_id": "s4", "market_id": "m0"}
    del uncategorised["store_category"]
    numeric = {**plain, "order_id": 3, "store_id": 7000, "market_id": 1}
    return {"probe-1": orjson.dumps(plain), "probe-2": orjson.dumps(uncategorised),
            "3": orjson.dumps(numeric)}  # fmt: skip


def test_streaming_online_and_batch_agree(
    settings: Settings,
    tmp_path: Path,
    redis_client: redis.Redis,
    key_prefix: str,
) -> None:
    served = model_settings(settings, tmp_path)
    ensure_topics(served)
    registry = Registry(served.registry_dir)
    model = registry.load(served.model_name, registry.resolve(served.model_name, "production"))
    now = datetime.now(UTC).replace(microsecond=0)
    seed = _seed(now - timedelta(seconds=30))
    raws = _probes(now)
    probes = {name: OrderCreated.model_validate_json(raw) for name, raw in raws.items()}
    probe = probes["probe-1"]
    assert probes["probe-2"].store_category is None and probes["3"].store_id == "7000"
    features = redis_features(served, served.redis_url_value() or "", key_prefix)
    latest = LatestPredictions(redis_client, key_prefix, ttl_s=600)
    reader = TopicReader(served, served.predictions_topic)
    keys = {name.encode() for name in raws}

    with (
        running_worker(served, features, model, after_scored=latest.store_result) as worker,
        api_client(served, key_prefix) as api,
    ):
        produce(served, ((*_topic(served, e), encode(e)) for e in seed))
        _wait(lambda: worker.stats.records >= len(seed), 60, "the worker to apply the seed")
        state = get_online_features(redis_client, [probe], key_prefix=key_prefix)
        state_of = {
            name: get_online_features(redis_client, [p], key_prefix=key_prefix).values
            for name, p in probes.items()
        }

        online = {name: api.post("/v1/predictions", content=raw) for name, raw in raws.items()}
        run = run_batch(
            redis_client,
            store_profiles(orders_frame(probes.values()), now + timedelta(seconds=1)),
            model,
            as_of=probe.created_at,
            slots=2,
            out_dir=tmp_path / "batch",
            key_prefix=key_prefix,
        )
        store = BatchPredictionStore(redis_client, key_prefix)
        stored = {name: store.read(p.store_id)[1] for name, p in probes.items()}

        produce(served, [(served.orders_topic, p.store_id.encode(), raws[n])
                         for n, p in probes.items()])  # fmt: skip
        got = reader.read_until(lambda ms: keys <= {m.key() for m in ms}, timeout_s=60)
        streamed = {m.key().decode(): m.value() for m in got if m.key() in keys}
        _wait(
            lambda: api.get("/v1/predictions/probe-1").status_code == 200,
            10,
            "the streamed prediction in Redis",
        )
        looked_up = api.get("/v1/predictions/probe-1")
    reader.close()

    assert run.stores == len(probes)
    for name in probes:
        assert online[name].status_code == 200, online[name].text
        assert stored[name] is not None and streamed[name] is not None, name
        stream_json = orjson.loads(streamed[name])
        online_json = online[name].json()
        batch_json = orjson.loads(stored[name])["predictions"][0]
        durations = {
            "streaming": stream_json["predicted_duration_s"],
            "online": online_json["predicted_duration_s"],
            "batch": batch_json["predicted_duration_s"],
        }
        assert max(durations.values()) - min(durations.values()) <= TOLERANCE_S, (name, durations)
        assert (stream_json["mode"], online_json["mode"], batch_json["mode"]) == (
            "streaming",
            "online",
            "batch",
        )
        assert _without(online_json, "mode", "served_at") == _without(
            stream_json, "mode", "served_at"
        )
        assert _without(batch_json, "mode", "served_at", "order_id") == _without(
            stream_json, "mode", "served_at", "order_id"
        )
        ranges = {
            path: (j["predicted_duration_p10_s"], j["predicted_duration_p90_s"])
            for path, j in (("streaming", stream_json), ("online", online_json),
                            ("batch", batch_json))
        }  # fmt: skip
        assert len(set(ranges.values())) == 1, (name, ranges)  # identical, not merely close
        low, high = ranges["streaming"]
        assert low <= durations["streaming"] <= high and high - low > 60, (name, ranges)
        expected = model.predict_range(state_of[name])[1]
        assert expected is not None and (low, high) == tuple(expected[:, 0].tolist())
    assert model.has_range
    parquet = pl.read_parquet(run.parquet_dir / "predictions.parquet").filter(pl.col("slot") == 0)
    by_store = {r["store_id"]: r for r in parquet.iter_rows(named=True)}
    for name, p in probes.items():
        batch_json = orjson.loads(stored[name])["predictions"][0]
        row = by_store[p.store_id]
        assert (row["predicted_duration_p10_s"], row["predicted_duration_p90_s"]) == (
            batch_json["predicted_duration_p10_s"],
            batch_json["predicted_duration_p90_s"],
        )
    assert orjson.loads(streamed["3"])["store_id"] == "7000"
    assert looked_up.content == streamed["probe-1"]
    # the probe saw real state: recent orders, deliveries and supply (not defaults)
    row = state.row(0)
    assert row["store__orders_created__60m"] > 0
    assert row["store__deliveries__60m"] > 0
    assert row["market__onshift_dashers"] > 0

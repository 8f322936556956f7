"""``eta predict batch`` against the real Redis: a run in Redis and Parquet, swapped atomically.

The job reads the stream's state through the online read, scores with a registered model,
writes every store's slots under a new version and moves one pointer; these tests check what
lands where, that a reader never sees a half-written run, that a failed run leaves the
previous one current, and the command end to end.
"""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
import orjson
import polars as pl
import pytest
import redis
from typer.testing import CliRunner

from predictor.api.predict import predict_orders
from predictor.batch_scoring import BatchPredictionStore, run_batch, slot_orders, slot_rows
from predictor.batch_scoring.profiles import PROFILE_SCHEMA, profile_order
from predictor.batch_scoring.slots import STREAM_COLUMNS
from predictor.cli import app
from predictor.models.artifact import EtaModel
from predictor.models.registry import Registry
from stream_features.event_log import write_log
from stream_features.settings import Settings
from tests.api_fakes import FixedModel
from tests.integration.api_helpers import model_settings, seed_state, seeded_profiles

pytestmark = pytest.mark.integration


@pytest.fixture()
def model(settings: Settings, tmp_path: Path) -> EtaModel:
    served = model_settings(settings, tmp_path)
    registry = Registry(served.registry_dir)
    return registry.load(served.model_name, "1")


def _many_profiles(n: int) -> pl.DataFrame:
    """``n`` stores with no streaming state (their rows take defaults and batch fallbacks)."""
    rows = [
        {
            "store_id": f"bulk-{i}",
            "market_id": f"m{i % 3}",
            "store_category": "pizza",
            "order_protocol": 1,
            "total_items": 2,
            "subtotal": 2000,
            "num_distinct_items": 1,
            "min_item_price": 500,
            "max_item_price": 1500,
            "estimated_order_place_duration_s": 300,
            "estimated_store_to_consumer_driving_duration_s": 600,
            "orders": 1,
            "last_order_ms": 0,
        }
        for i in range(n)
    ]
    return pl.DataFrame(rows, schema=PROFILE_SCHEMA)


def test_a_run_lands_in_redis_and_parquet_and_slot_0_is_the_online_answer(
    model: EtaModel, redis_client: redis.Redis, key_prefix: str, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    profiles = seeded_profiles(seed_state(redis_client, key_prefix, now), now)
    out = tmp_path / "batch"

    run = run_batch(
        redis_client,
        profiles,
        model,
        as_of=now,
        slots=4,
        out_dir=out,
        key_prefix=key_prefix,
        chunk_stores=4,  # several chunks, so the read-ahead path runs
        read_stores=3,
    )

    assert (run.stores, run.rows, run.skipped_stores) == (6, 24, 0)
    assert run.model_version == "1" and run.backend == "lightgbm"
    store = BatchPredictionStore(redis_client, key_prefix)
    assert store.current() == run.version and store.count(run.version) == 6
    version, raw = store.read("s2")
    assert version == run.version and raw is not None
    s2 = orjson.loads(raw)
    assert [p["created_at"] for p in s2["predictions"]] == [
        (now + timedelta(hours=k)).isoformat().replace("+00:00", "Z") for k in range(4)
    ]
    (profile,) = profiles.filter(pl.col("store_id") == "s2").to_dicts()
    assert s2["basket"]["subtotal"] == profile["subtotal"]
    # slot 0 is what POST /v1/predictions answers for the same order and state
    template = profile_order(profile, "batch:s2:0", now)
    (online,) = predict_orders(redis_client, [template], model, key_prefix=key_prefix)
    assert s2["predictions"][0]["predicted_duration_s"] == pytest.approx(
        orjson.loads(online)["predicted_duration_s"], abs=1e-9
    )
    # later slots carry slot 0's streaming state
    rows = slot_rows(redis_client, slot_orders([template], 4), 4, key_prefix=key_prefix)
    stream = rows.values[:, STREAM_COLUMNS]
    np.testing.assert_array_equal(stream, np.repeat(stream[:1], 4, axis=0))
    assert rows.values[1, rows.names.index("order__hour_of_day")] == (now.hour + 1) % 24

    frame = pl.read_parquet(out / run.version / "predictions.parquet")
    assert frame.height == 24
    assert frame.filter(pl.col("store_id") == "s2").sort("slot")[
        "predicted_duration_s"
    ].to_list() == [p["predicted_duration_s"] for p in s2["predictions"]]
    assert set(frame["model_version"]) == {"1"} and set(frame["batch_version"]) == {run.version}
    assert pl.read_parquet(out / run.version / "profiles.parquet").height == 6
    summary = orjson.loads((out / run.version / "summary.json").read_bytes())
    assert summary["rows"] == 24 and summary["model_version"] == "1"
    assert (out / "CURRENT").read_text() == run.version


def test_a_reader_sees_one_whole_run_or_the_other(
    redis_client: redis.Redis, key_prefix: str, tmp_path: Path
) -> None:
    profiles = _many_profiles(3000)
    now = datetime.now(UTC)
    first = run_batch(
        redis_client, profiles, FixedModel(600), as_of=now, slots=2, out_dir=None,
        key_prefix=key_prefix, version="v1",
    )  # fmt: skip
    store = BatchPredictionStore(redis_client, key_prefix)
    seen: list[tuple[str | None, float]] = []
    torn: list[str] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            version, raw = store.read("bulk-2999")  # the last store a run writes
            if raw is None or orjson.loads(raw)["batch_version"] != version:
                torn.append(f"{version}: {raw!r}")
                continue
            seen.append((version, orjson.loads(raw)["predictions"][0]["predicted_duration_s"]))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        second = run_batch(
            redis_client, profiles, FixedModel(900), as_of=now, slots=2, out_dir=None,
            key_prefix=key_prefix, version="v2", chunk_stores=500,
        )  # fmt: skip
    finally:
        stop.set()
        reader.join(10)
    third = run_batch(
        redis_client, profiles.head(10), FixedModel(1200), as_of=now, slots=2, out_dir=None,
        key_prefix=key_prefix, version="v3",
    )  # fmt: skip

    assert (first.version, second.version) == ("v1", "v2")
    assert not torn
    assert seen and set(seen) <= {("v1", 600.0), ("v2", 900.0)}
    assert seen[0] == ("v1", 600.0)
    assert third.dropped_versions == ["v1"]
    assert not redis_client.exists(store.key("v1")) and redis_client.exists(store.key("v2"))
    assert store.read("bulk-5")[0] == "v3"
    assert store.read("bulk-2999") == ("v3", None)  # not an active store of the newest run


class _FailingModel(FixedModel):
    """Scores the first chunk, then fails (a model or machine failing mid-run)."""

    def __init__(self) -> None:
        super().__init__(700)
        self.calls = 0

    def predict(self, values: npt.NDArray[np.float64], /) -> npt.NDArray[np.float64]:
        self.calls += 1
        if self.calls > 1:
            raise RuntimeError("scoring failed mid-run")
        return super().predict(values)


def test_a_failed_run_leaves_the_previous_run_current(
    redis_client: redis.Redis, key_prefix: str, tmp_path: Path
) -> None:
    profiles = _many_profiles(50)
    out = tmp_path / "batch"
    now = datetime.now(UTC)
    good = run_batch(
        redis_client, profiles, FixedModel(), as_of=now, slots=2, out_dir=out,
        key_prefix=key_prefix,
    )  # fmt: skip

    with pytest.raises(RuntimeError, match="mid-run"):
        run_batch(
            redis_client, profiles, _FailingModel(), as_of=now, slots=2, out_dir=out,
            key_prefix=key_prefix, version="broken", chunk_stores=10,
        )  # fmt: skip

    store = BatchPredictionStore(redis_client, key_prefix)
    assert store.current() == good.version
    assert not redis_client.exists(store.key("broken"))
    assert sorted(p.name for p in out.iterdir()) == sorted(["CURRENT", good.version])
    assert (out / "CURRENT").read_text() == good.version


def test_eta_predict_batch_end_to_end(
    settings: Settings,
    tmp_path: Path,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    served = model_settings(settings, tmp_path)
    now = datetime.now(UTC)
    orders = seed_state(redis_client, "", now, stores=5)
    history = tmp_path / "history.jsonl"
    write_log(history, orders)
    out = tmp_path / "batch-out"
    for key in [k for k in os.environ if k.startswith("ETA_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("ETA_REDIS_URL", served.redis_url_value() or "")
    monkeypatch.setenv("ETA_REGISTRY_DIR", str(served.registry_dir))
    monkeypatch.setenv("ETA_MODEL_NAME", served.model_name)
    monkeypatch.setenv("ETA_SCORING", "lightgbm")
    monkeypatch.setenv("ETA_BATCH_OUT_DIR", str(out))

    result = CliRunner().invoke(
        app, ["predict", "batch", "--history", str(history), "--slots", "3"]
    )
    missing = CliRunner().invoke(app, ["predict", "batch"])

    assert result.exit_code == 0, result.output
    assert "rejected" not in result.output
    assert "5 active stores × 3 slots" in result.output
    assert "predictions/s" in result.output
    version = (out / "CURRENT").read_text()
    assert pl.read_parquet(out / version / "predictions.parquet").height == 15
    store = BatchPredictionStore(redis_client)
    assert store.current() == version
    assert orjson.loads(store.read("s4")[1] or b"{}")["basket"]["store_category"] == "pizza"
    assert missing.exit_code == 2 and "exactly one of --history or --profiles" in missing.output

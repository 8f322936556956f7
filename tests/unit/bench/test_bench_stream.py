"""bench/stream.py's reference row: the trivial loop (bench/stream_loop.py) without a broker.

The loop is only a fair floor if its clients are the worker's, so their configs are compared
with what ``confluent_worker`` hands to confluent-kafka, for settings that change them.
"""

from __future__ import annotations

import doctest
import importlib
from datetime import datetime
from types import ModuleType
from typing import Any

import orjson
import pytest

from predictor.engines import confluent, wiring
from stream_features.settings import Settings


def _load(name: str) -> ModuleType:
    """A module of the bench package, ``bench.<name>``."""
    return importlib.import_module(f"bench.{name}")


loop = _load("stream_loop")
bench = _load("stream")


class _Recorded:
    """Stands in for confluent-kafka's clients: keeps the config, connects nowhere."""

    configs: list[dict[str, Any]]

    def __init__(self, config: dict[str, Any]) -> None:
        type(self).configs.append(dict(config))


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"batch_max_wait_ms": 25, "session_timeout_ms": 9000},
        {"kafka": {"linger_ms": "20", "fetch_wait_max_ms": "50"}},
        {"align_margin_s": 0},
    ],
)
def test_the_loop_has_the_workers_client_configs(
    monkeypatch: pytest.MonkeyPatch, overrides: dict[str, Any]
) -> None:
    consumers = type("Consumers", (_Recorded,), {"configs": []})
    producers = type("Producers", (_Recorded,), {"configs": []})
    monkeypatch.setattr(confluent, "Consumer", consumers)
    monkeypatch.setattr(confluent, "Producer", producers)
    settings = Settings(kafka_bootstrap_servers="127.0.0.1:1", **overrides)
    wiring.confluent_worker(settings, features=None, models=lambda: None)  # type: ignore[arg-type]  # features=None: only the clients' config is built here
    [worker_consumer], [worker_producer] = consumers.configs, producers.configs
    worker_consumer.pop("on_commit")
    for watched in (worker_consumer, worker_producer):  # the engine's broker watch, not tuning
        watched.pop("stats_cb")
        watched.pop("statistics.interval.ms")
    assert loop.client_configs(settings) == (worker_consumer, worker_producer)


def test_an_answer_reads_as_a_prediction_does_in_the_latency_reader() -> None:
    order = b'{"order_id": "live7", "created_at": "2026-05-09T07:35:25.123456Z", "x": 1}'
    key, value = loop.answer(order, "2026-05-09T07:35:25.223456+00:00")
    pred = orjson.loads(value)
    served = datetime.fromisoformat(pred["served_at"]).timestamp()
    created = datetime.fromisoformat(pred["created_at"]).timestamp()
    assert key == b"live7" and pred["order_id"] == "live7"
    assert served - created == pytest.approx(0.1)


def test_without_a_reference_p99_no_engine_meets_the_target() -> None:
    results = [{"engine": "confluent", "latency": {"p99_ms": 100.0}}]
    assert bench.versus_reference(results, {"latency": {"received": 0}}) == {
        "confluent": {"p99_ratio": None, "within_1.5x": False}
    }
    assert bench.versus_reference(results, {"latency": {"p99_ms": 50.0}}) == {
        "confluent": {"p99_ratio": 2.0, "within_1.5x": False}
    }


@pytest.mark.parametrize("module", [loop, bench])
def test_doctests(module: ModuleType) -> None:
    failed, tried = doctest.testmod(module)
    assert tried and not failed

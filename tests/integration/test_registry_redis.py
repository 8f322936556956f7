"""The registry's Redis mirror and hot reload against the real Redis of the session stack, and
(the tests parametrised with ``REDIS_KINDS``) against the Redis Cluster: there the pointer SET and
the PUBLISH go without a MULTI."""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import redis
from typer.testing import CliRunner

from predictor.models.handle import ModelHandle
from predictor.models.registry import Registry
from stream_features.redis_client import is_cluster
from stream_features.stack import StackUrls
from tests.conftest import REDIS_KINDS
from tests.polling import wait_until
from tests.unit._training_data import rows, write_small_artifact

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("artifacts")
    return (
        write_small_artifact(root / "a").artifact_dir,
        write_small_artifact(root / "b", seed=1, shift_s=900).artifact_dir,
    )


@pytest.fixture()
def registry(
    tmp_path: Path, artifacts: tuple[Path, Path], redis_client: redis.Redis, key_prefix: str
) -> Registry:
    registry = Registry(tmp_path / "models", redis_client, key_prefix=f"{key_prefix}eta:registry")
    for artifact in artifacts:
        registry.register(artifact)
    return registry


@pytest.fixture()
def subscriber(registry: Registry, redis_client: redis.Redis) -> Iterator[redis.client.PubSub]:
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]  # untyped in redis-py's own annotations
    pubsub.subscribe(registry.channel)
    yield pubsub
    pubsub.close()


@pytest.mark.parametrize("redis_client", REDIS_KINDS, indirect=True)
def test_promote_sets_the_pointer_and_publishes_the_move(
    registry: Registry, redis_client: redis.Redis, subscriber: redis.client.PubSub
) -> None:
    move = registry.promote("eta", "1", "production")

    assert move.redis_updated
    assert redis_client.get(registry.key("eta", "production")) == b"1"
    message = None
    deadline = time.monotonic() + 5
    while message is None and time.monotonic() < deadline:
        message = subscriber.get_message(timeout=0.2)
    assert message is not None
    payload = orjson.loads(message["data"])
    assert payload["name"] == "eta"
    assert (payload["stage"], payload["from_version"], payload["to_version"]) == (
        "production",
        None,
        "1",
    )
    assert payload["who"] and payload["at"]


@pytest.mark.parametrize("redis_client", REDIS_KINDS, indirect=True)
def test_rollback_is_mirrored_too(registry: Registry, redis_client: redis.Redis) -> None:
    registry.promote("eta", "1", "production")
    registry.promote("eta", "2", "production")

    assert registry.rollback("eta").redis_updated
    assert redis_client.get(registry.key("eta", "production")) == b"1"


@pytest.mark.parametrize("redis_client", REDIS_KINDS, indirect=True)
def test_sync_redis_restores_lost_pointers(registry: Registry, redis_client: redis.Redis) -> None:
    registry.promote("eta", "2", "staging")
    redis_client.delete(registry.key("eta", "staging"))

    assert registry.sync_redis() == 1
    assert redis_client.get(registry.key("eta", "staging")) == b"2"


@pytest.mark.parametrize("redis_client", REDIS_KINDS, indirect=True)
def test_a_running_handle_serves_a_promoted_version_within_2_s(
    registry: Registry, redis_client: redis.Redis
) -> None:
    registry.promote("eta", "1", "production")
    # poll_s far above 2 s: only the pub/sub message can make the deadline.
    with ModelHandle(registry, "eta", "production", redis_client, poll_s=30.0) as handle:
        assert handle.current().version == "1"

        registry.promote("eta", "2", "production")

        wait_until(lambda: handle.current().version == "2", timeout_s=2.0)
    assert handle.current().predict(rows()).shape == (64,)


def test_a_handle_polls_the_pointer_when_a_message_was_missed(
    registry: Registry, redis_client: redis.Redis
) -> None:
    registry.promote("eta", "1", "production")
    with ModelHandle(registry, "eta", "production", redis_client, poll_s=0.1) as handle:
        # Another registry moved the pointer without publishing (or the message was lost).
        redis_client.set(registry.key("eta", "production"), "2")

        wait_until(lambda: handle.current().version == "2", timeout_s=2.0)


@pytest.mark.parametrize("redis_client", REDIS_KINDS, indirect=True)
def test_eta_models_promote_with_redis_updates_the_pointer(
    registry: Registry,
    redis_client: redis.Redis,
    stack: StackUrls,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    from predictor.cli import app

    url = request.getfixturevalue("cluster").url if is_cluster(redis_client) else stack.redis_url
    monkeypatch.setenv("ETA_REDIS_URL", url)
    monkeypatch.setenv("ETA_REGISTRY_DIR", str(registry.root))
    name = f"eta-{registry.key_prefix[:9].strip(':')}"
    registry.register(registry.path("eta", "1"), name=name)

    result = CliRunner().invoke(
        app, ["models", "promote", "1", "--stage", "staging", "--name", name]
    )

    try:
        assert result.exit_code == 0, result.output
        assert "not updated" not in result.output
        assert redis_client.get(f"eta:registry:{name}:staging") == b"1"
    finally:
        redis_client.delete(f"eta:registry:{name}:staging")


def _private_redis(port: int, data_dir: Path) -> subprocess.Popen[bytes]:
    from stream_features.stack import redis_binary, wait_for_redis

    proc = subprocess.Popen(
        [
            redis_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(data_dir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_redis(f"redis://127.0.0.1:{port}/0")
    return proc


def test_a_handle_logs_a_lost_redis_once_and_says_when_it_is_back(
    tmp_path: Path, artifacts: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """It retries every poll; logging each retry flooded the logs (two lines a second per
    process) while Redis was down."""
    from stream_features.stack import free_port

    port = free_port()
    proc = _private_redis(port, tmp_path)
    client = redis.Redis(port=port, socket_timeout=0.5, socket_connect_timeout=0.5)
    registry = Registry(tmp_path / "models", client)
    registry.register(artifacts[0])
    registry.promote("eta", "1", "production")
    try:
        with (
            caplog.at_level(logging.INFO, logger="predictor.models.handle"),
            ModelHandle(registry, "eta", "production", client, poll_s=0.05) as handle,
        ):
            proc.terminate()
            proc.wait(5)
            wait_until(lambda: handle.last_error is not None, 10)
            down = time.monotonic()
            wait_until(lambda: time.monotonic() - down > 1.0, 2)  # 20 retries
            warned = [r for r in caplog.records if "cannot reach Redis" in r.getMessage()]
            proc = _private_redis(port, tmp_path)
            wait_until(
                lambda: any("reaches Redis again" in r.getMessage() for r in caplog.records),
                10,
            )
            assert handle.current().version == "1"
    finally:
        proc.terminate()
        proc.wait(5)
        client.close()
    assert len(warned) == 1, [r.getMessage() for r in warned]

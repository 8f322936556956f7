"""Whoever can write Redis can move a stage pointer; they still cannot make a service load a
file from outside the registry, nor stop it serving: a hostile pointer or move message is
refused, the current model stays, and the handle says why."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import redis

from predictor.models.handle import ModelHandle
from predictor.models.registry import Registry
from tests.polling import wait_until
from tests.unit._training_data import write_small_artifact

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("artifacts")
    return (
        write_small_artifact(root / "a").artifact_dir,
        write_small_artifact(root / "b", seed=1).artifact_dir,
    )


@pytest.fixture()
def registry(
    tmp_path: Path, redis_client: redis.Redis, key_prefix: str, artifacts: tuple[Path, Path]
) -> Registry:
    registry = Registry(tmp_path / "models", redis_client, key_prefix=f"{key_prefix}eta:registry")
    registry.register(artifacts[0])
    registry.promote("eta", "1", "production")
    return registry


HOSTILE_VERSIONS = ["../../x", "/etc/passwd", "1/../../../x", "1\x00", "x" * 10_000]


@pytest.mark.parametrize("version", HOSTILE_VERSIONS, ids=lambda v: repr(v)[:16])
def test_a_hostile_pointer_in_redis_is_refused_and_the_model_kept(
    registry: Registry, redis_client: redis.Redis, version: str
) -> None:
    with ModelHandle(registry, "eta", "production", redis_client, poll_s=0.05) as handle:
        redis_client.set(registry.key("eta", "production"), version)
        move = {"name": "eta", "stage": "production", "to_version": version}
        redis_client.publish(registry.channel, orjson.dumps(move))

        wait_until(lambda: handle.last_error is not None, timeout_s=5.0)
        assert "is not allowed" in (handle.last_error or "")
        assert handle.current().version == "1"
        assert handle.swaps == 0


@pytest.mark.parametrize(
    "message",
    [b"not json", b"[1,2]", b'{"name": "eta"}', b"\xff" * 100_000, b"null"],
    ids=["garbage", "list", "partial", "binary", "null"],
)
def test_hostile_move_messages_do_not_stop_the_handle(
    registry: Registry, redis_client: redis.Redis, message: bytes, artifacts: tuple[Path, Path]
) -> None:
    with ModelHandle(registry, "eta", "production", redis_client, poll_s=0.05) as handle:
        redis_client.publish(registry.channel, message)
        registry.register(artifacts[1])
        registry.promote("eta", "2", "production")  # still followed afterwards

        wait_until(lambda: handle.current().version == "2", timeout_s=5.0)

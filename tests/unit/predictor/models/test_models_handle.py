"""ModelHandle without Redis: it follows the local alias file and swaps between batches."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest

from predictor.errors import StageNotSetError
from predictor.models.artifact import atomic_write
from predictor.models.handle import ModelHandle, ShadowRecord, ShadowScorer
from predictor.models.registry import Registry
from tests.polling import wait_until
from tests.unit._training_data import rows, write_small_artifact


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("artifacts")
    return (
        write_small_artifact(root / "a").artifact_dir,
        write_small_artifact(root / "b", seed=1, shift_s=900).artifact_dir,
    )


@pytest.fixture()
def registry(tmp_path: Path, artifacts: tuple[Path, Path]) -> Registry:
    registry = Registry(tmp_path / "models")
    for artifact in artifacts:
        registry.register(artifact)
    return registry


@pytest.fixture()
def handle(registry: Registry) -> Iterator[ModelHandle]:
    registry.promote("eta", "1", "production")
    with ModelHandle(registry, "eta", "production", None, poll_s=0.05) as h:
        yield h


def test_handle_serves_the_stage_and_follows_a_promotion(
    registry: Registry, handle: ModelHandle
) -> None:
    batch = handle.current()
    before = batch.predict(rows())
    assert batch.version == "1"

    registry.promote("eta", "2", "production")

    wait_until(lambda: handle.current().version == "2")
    assert batch.version == "1"  # a batch holding the old model keeps scoring with it
    np.testing.assert_array_equal(batch.predict(rows()), before)
    assert handle.current().predict(rows()).mean() > before.mean() + 300
    assert handle.status()["swaps"] == 1


def test_handle_keeps_the_old_model_when_the_new_one_fails_to_load(
    registry: Registry, handle: ModelHandle
) -> None:
    broken = registry.root / "eta" / "2" / "model.txt"
    broken.write_text(broken.read_text() + "# edited\n")
    # What another host's registry sync would do: the pointer moves to a broken artifact.
    atomic_write(registry.root / "eta" / "aliases.json", orjson.dumps({"production": "2"}))

    wait_until(lambda: handle.last_error is not None)
    assert "model.txt has SHA-256" in str(handle.last_error)
    assert handle.current().version == "1"
    assert handle.current().predict(rows()).shape == (64,)


def test_handle_on_an_unset_stage_fails_fast_unless_asked_to_wait(registry: Registry) -> None:
    with pytest.raises(StageNotSetError, match="production"):
        ModelHandle(registry, "eta", "production", None, poll_s=0.05)

    with ModelHandle(registry, "eta", "staging", None, 0.05, wait_for_stage=True) as waiting:
        assert waiting.peek() is None
        with pytest.raises(StageNotSetError):
            waiting.current()
        registry.promote("eta", "2", "staging")
        wait_until(lambda: waiting.peek() is not None)
        assert waiting.current().version == "2"


def test_shadow_predictions_are_recorded_never_returned(
    registry: Registry, handle: ModelHandle
) -> None:
    registry.promote("eta", "2", "staging")
    seen: list[ShadowRecord] = []
    with ModelHandle(registry, "eta", "staging", None, poll_s=0.05) as staging:
        shadow = ShadowScorer(staging, sink=seen.append)
        model = handle.current()
        x = rows()
        served = model.predict(x)

        record = shadow.score(x, model, served)

    assert record is not None and seen == [record]
    assert (record.primary_version, record.shadow_version, record.rows) == ("1", "2", 64)
    assert record.mean_abs_diff_s > 300
    np.testing.assert_array_equal(model.predict(x), served)


def test_a_failing_shadow_is_counted_and_does_not_raise(
    registry: Registry, handle: ModelHandle
) -> None:
    registry.promote("eta", "2", "staging")
    with ModelHandle(registry, "eta", "staging", None, poll_s=0.05) as staging:
        shadow = ShadowScorer(staging)
        model = handle.current()

        assert shadow.score(np.zeros((3, 2)), model, np.zeros(3)) is None

    assert shadow.errors == 1
    assert not shadow.records


def test_auto_scoring_serves_at_once_and_moves_to_the_compiled_twin(registry: Registry) -> None:
    pytest.importorskip("lleaves", reason="compiled scoring needs pip install etastream[compiled]")
    registry.promote("eta", "1", "production")

    with ModelHandle(registry, "eta", "production", None, 0.05, scoring="auto") as handle:
        first = handle.current()
        assert first.version == "1"
        wait_until(lambda: handle.current().backend == "compiled", timeout_s=60)
        compiled = handle.current()

    assert compiled.version == "1"
    x = rows()
    np.testing.assert_allclose(compiled.predict(x), first.predict_lightgbm(x), atol=1e-6)

"""Compiled scoring: same answers as LightGBM, a cache that never serves another model."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from predictor.errors import CompiledScoringError
from predictor.models import compiled
from predictor.models.artifact import load_artifact
from predictor.models.compiled import compile_model, parity_sample, with_scoring
from tests.unit._training_data import rows, write_small_artifact

pytest.importorskip("lleaves", reason="compiled scoring needs pip install etastream[compiled]")


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("artifacts")
    return (
        write_small_artifact(root / "a").artifact_dir,
        write_small_artifact(root / "b", seed=1, shift_s=900).artifact_dir,
    )


@pytest.fixture()
def fresh(artifacts: tuple[Path, Path], tmp_path: Path) -> Path:
    """A copy with no compiled cache yet."""
    return Path(shutil.copytree(artifacts[0], tmp_path / "a"))


@pytest.fixture(scope="module")
def shared(artifacts: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy whose cache the tests share: one compile for all that do not test the cache."""
    return Path(shutil.copytree(artifacts[0], tmp_path_factory.mktemp("shared") / "a"))


def test_compiled_predictions_match_lightgbm(shared: Path) -> None:
    model = compile_model(load_artifact(shared))
    x = rows(300)
    x[::7, 3] = np.nan

    assert model.backend == "compiled"
    assert model.scoring_info["parity_max_abs_diff_s"] <= 1e-6
    np.testing.assert_allclose(model.predict(x), model.predict_lightgbm(x), rtol=0, atol=1e-6)
    assert model.predict(x[:1]).shape == (1,)


def test_compiled_library_is_cached_in_the_artifact_and_reused(fresh: Path) -> None:
    first = compile_model(load_artifact(fresh))
    second = compile_model(load_artifact(fresh))

    assert not first.scoring_info["cache_hit"]
    assert second.scoring_info["cache_hit"]
    assert Path(second.scoring_info["cache"]).parent == fresh / "compiled"
    load_artifact(fresh)  # the cache is not part of the checksummed files


def test_a_cache_built_for_another_model_is_never_used(
    artifacts: tuple[Path, Path], tmp_path: Path
) -> None:
    a = Path(shutil.copytree(artifacts[0], tmp_path / "a"))
    b = Path(shutil.copytree(artifacts[1], tmp_path / "b"))
    compile_model(load_artifact(a))
    shutil.copytree(a / "compiled", b / "compiled")

    model = compile_model(load_artifact(b))

    assert not model.scoring_info["cache_hit"]
    x = rows(50)
    np.testing.assert_allclose(model.predict(x), model.predict_lightgbm(x), atol=1e-6)
    assert len(list((b / "compiled").glob("*.bin"))) == 2


def test_a_damaged_cache_is_rebuilt_not_loaded(fresh: Path) -> None:
    first = compile_model(load_artifact(fresh))
    library = Path(first.scoring_info["cache"])
    library.write_bytes(library.read_bytes()[:100])  # LLVM would abort the process on this

    again = compile_model(load_artifact(fresh))

    assert not again.scoring_info["cache_hit"]
    x = rows(50)
    np.testing.assert_allclose(again.predict(x), again.predict_lightgbm(x), atol=1e-6)
    assert compile_model(load_artifact(fresh)).scoring_info["cache_hit"]


def test_parity_failure_refuses_the_compiled_path(shared: Path) -> None:
    with pytest.raises(CompiledScoringError, match="differ by up to"):
        compile_model(load_artifact(shared), tolerance_s=-1.0)


def test_parity_sample_has_every_feature_and_missing_values(shared: Path) -> None:
    model = load_artifact(shared)
    sample = parity_sample(model, rows=500)

    assert sample.shape == (500, len(model.feature_names))
    assert np.isnan(sample).mean(axis=0).min() > 0


def test_scoring_setting_picks_the_engine(shared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = load_artifact(shared)

    assert with_scoring(model, "lightgbm") is model
    assert with_scoring(model, "auto").backend == "compiled"
    assert with_scoring(model, "compiled").backend == "compiled"

    monkeypatch.setattr(compiled, "lleaves_version", lambda: None)
    assert with_scoring(model, "auto").backend == "lightgbm"
    with pytest.raises(CompiledScoringError, match="lleaves is not installed"):
        with_scoring(model, "compiled")

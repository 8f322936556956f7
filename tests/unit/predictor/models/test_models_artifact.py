"""The artifact: a text model, metadata and checksums; anything changed is refused on load."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import orjson
import pytest

from predictor.errors import ArtifactError, ArtifactTamperedError, FeatureRegistryMismatch
from predictor.models.artifact import RANGE_FILES, load_artifact, read_metadata, write_artifact
from predictor.models.reference import psi
from predictor.models.workflow import train_to_artifact
from stream_features.definitions import FEATURES, feature_names, registry_hash
from tests.unit._training_data import SMALL, rows, small_split, write_small_artifact


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_small_artifact(tmp_path_factory.mktemp("artifact") / "a").artifact_dir


@pytest.fixture()
def copy(artifact: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(artifact, tmp_path / "copy"))


def test_loaded_model_predicts_what_lightgbm_predicts(artifact: Path) -> None:
    model = load_artifact(artifact)
    x = rows()

    predictions = model.predict(x)

    assert model.feature_names == feature_names()
    assert predictions.shape == (x.shape[0],)
    assert predictions.dtype == np.float64
    np.testing.assert_array_equal(predictions, np.maximum(model.booster.predict(x), 0))
    assert model.predict(x[:0]).shape == (0,)


def test_predictions_are_clipped_at_zero(artifact: Path) -> None:
    model = load_artifact(artifact)
    x = rows(8)
    x[:, feature_names().index("order__estimated_driving_duration_s")] = -1e9
    x[:, feature_names().index("store__delivery_duration_median__28d")] = -1e9

    assert model.predict(x).min() >= 0


def test_wrong_number_of_features_says_what_is_expected(artifact: Path) -> None:
    model = load_artifact(artifact)

    with pytest.raises(ValueError, match=f"rows of {len(feature_names())} features"):
        model.predict(np.zeros((2, 3)))


def test_models_are_text_not_pickle_and_checksums_cover_every_file(artifact: Path) -> None:
    for name in ("model.txt", *RANGE_FILES):
        assert (artifact / name).read_text().startswith("tree\n")
    listed = (artifact / "checksum.sha256").read_text().split()
    assert listed[1::2] == ["model.txt", "metadata.json", *RANGE_FILES]


def test_the_range_holds_the_point_and_comes_from_the_bound_models(artifact: Path) -> None:
    model = load_artifact(artifact)
    x = rows(200)

    point, bounds = model.predict_range(x)

    assert model.has_range and bounds is not None and bounds.shape == (2, 200)
    np.testing.assert_array_equal(point, model.predict(x))
    assert (bounds[0] >= 0).all() and (bounds[0] <= point).all() and (point <= bounds[1]).all()
    assert model.bounds is not None
    offset = model.metadata["range"]["conformal_offset_s"]
    raw_upper = model.bounds[1].predict(x) + offset
    np.testing.assert_array_equal(bounds[1], np.maximum(raw_upper, point))
    assert (bounds[1] - bounds[0]).mean() > 60  # a range, not a point
    empty_point, empty_bounds = model.predict_range(x[:0])
    assert empty_point.shape == (0,) and empty_bounds is not None and empty_bounds.shape == (2, 0)


def test_an_artifact_without_a_range_still_loads_and_predicts(tmp_path: Path) -> None:
    directory = tmp_path / "plain"
    train_to_artifact(
        small_split(), directory, name="eta", training_set="x", config=SMALL, with_range=False
    )

    model = load_artifact(directory)

    assert not model.has_range and "range" not in model.metadata
    assert not any((directory / name).exists() for name in RANGE_FILES)
    point, bounds = model.predict_range(rows(5))
    assert bounds is None and point.shape == (5,)


@pytest.mark.parametrize("name", RANGE_FILES)
def test_an_edited_or_missing_bound_model_is_refused(copy: Path, name: str) -> None:
    text = (copy / name).read_text()
    (copy / name).write_text(text.replace("leaf_value=", "leaf_value=1", 1))
    with pytest.raises(ArtifactTamperedError, match=name.replace(".", r"\.")):
        load_artifact(copy)
    (copy / name).unlink()
    with pytest.raises(ArtifactError, match=f"{name.replace('.', '.')} is missing"):
        load_artifact(copy)


def test_a_range_the_checksums_do_not_cover_is_refused(copy: Path) -> None:
    lines = (copy / "checksum.sha256").read_text().splitlines()
    kept = [line for line in lines if not line.endswith(RANGE_FILES[1])]
    (copy / "checksum.sha256").write_text("".join(f"{line}\n" for line in kept))

    with pytest.raises(ArtifactError, match=f"does not cover {RANGE_FILES[1]}"):
        load_artifact(copy)


def test_metadata_describes_the_model(artifact: Path) -> None:
    meta = read_metadata(artifact)

    assert meta["feature_registry_hash"] == registry_hash()
    assert meta["feature_names"] == feature_names()
    assert meta["feature_dtypes"] == [f.dtype for f in FEATURES]
    assert meta["categorical_features"] == ["order__order_protocol", "order__store_category"]
    assert meta["training"]["train"]["rows"] > meta["training"]["valid"]["rows"] > 0
    assert meta["training"]["train"]["max_created_at"] < meta["training"]["valid"]["min_created_at"]
    validation = meta["metrics"]["validation"]
    assert set(validation) == {"model", "global_median", "store_median"}
    assert {"lightgbm", "numpy", "python"} <= set(meta["libraries"])
    assert set(meta["reference"]["features"]) == set(feature_names())
    busy = meta["reference"]["features"]["market__busy_ratio"]
    assert busy["kind"] == "numeric" and len(busy["shares"]) == len(busy["edges"]) + 1
    assert abs(sum(busy["shares"]) - 1) < 1e-9
    assert meta["reference"]["prediction"]["kind"] == "numeric"


def test_reference_bins_give_zero_psi_on_the_training_distribution(artifact: Path) -> None:
    meta = read_metadata(artifact)
    x = rows(500)
    ref = meta["reference"]["features"]["order__estimated_driving_duration_s"]

    assert psi(ref, x[:, feature_names().index("order__estimated_driving_duration_s")]) < 0.1
    assert psi(ref, x[:, feature_names().index("order__estimated_driving_duration_s")] * 3) > 0.5


def test_edited_model_file_is_refused(copy: Path) -> None:
    text = (copy / "model.txt").read_text()
    (copy / "model.txt").write_text(text.replace("leaf_value=", "leaf_value=1", 1))

    with pytest.raises(ArtifactTamperedError, match=r"model\.txt has SHA-256") as caught:
        load_artifact(copy)
    assert "do not serve it" in str(caught.value)


def test_edited_metadata_is_refused(copy: Path) -> None:
    meta = orjson.loads((copy / "metadata.json").read_bytes())
    meta["target_transform"] = "log1p"
    (copy / "metadata.json").write_bytes(orjson.dumps(meta))

    with pytest.raises(ArtifactTamperedError, match=r"metadata\.json"):
        load_artifact(copy)


@pytest.mark.parametrize("remove", ["checksum.sha256", "model.txt"])
def test_missing_file_is_refused(copy: Path, remove: str) -> None:
    (copy / remove).unlink()

    with pytest.raises(ArtifactError, match=remove.replace(".", r"\.")):
        load_artifact(copy)


def test_checksum_file_listing_other_paths_is_refused(copy: Path) -> None:
    (copy / "checksum.sha256").write_text(f"{'0' * 64}  ../../etc/passwd\n")

    with pytest.raises(ArtifactError, match="line 1 is not valid"):
        load_artifact(copy)


def test_model_trained_under_other_feature_definitions_is_refused(copy: Path) -> None:
    meta = read_metadata(copy)
    write_artifact(copy, (copy / "model.txt").read_text(), {**meta, "feature_registry_hash": "0ld"})

    with pytest.raises(FeatureRegistryMismatch, match="trained under feature registry 0ld") as c:
        load_artifact(copy)
    assert registry_hash() in str(c.value)
    assert "retrain" in str(c.value)

"""The artifact: a text model, metadata and checksums; anything changed is refused on load."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import orjson
import pytest

from predictor.errors import ArtifactError, ArtifactTamperedError, FeatureRegistryMismatch
from predictor.models.artifact import load_artifact, read_metadata, write_artifact
from predictor.models.reference import psi
from stream_features.definitions import FEATURES, feature_names, registry_hash
from tests.unit._training_data import rows, write_small_artifact


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


def test_model_is_text_not_pickle_and_checksums_cover_both_files(artifact: Path) -> None:
    assert (artifact / "model.txt").read_text().startswith("tree\n")
    listed = (artifact / "checksum.sha256").read_text().split()
    assert listed[1::2] == ["model.txt", "metadata.json"]


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

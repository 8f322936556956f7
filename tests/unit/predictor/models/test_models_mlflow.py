"""MLflow interop (#20): ``eta models export --mlflow`` and ``eta models import``, both ways.

An exported model's pyfunc predicts what etastream predicts (to 1e-9) from a frame with the
registry's columns in any order; its LightGBM flavour loads with ``mlflow.lightgbm``; its
metadata names the feature-registry hash. An imported LightGBM model is served, and one whose
signature is not the feature registry's is refused, saying which input differs.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from predictor.models.artifact import EtaModel, load_artifact
from predictor.models.registry import Registry
from stream_features.definitions import registry_hash
from tests.unit._training_data import rows, write_small_artifact

mlflow = pytest.importorskip("mlflow", reason="pip install -e '.[mlflow]'")
pd = pytest.importorskip("pandas")

from predictor.models.mlflow_io import MlflowImportError, export_mlflow, import_mlflow  # noqa: E402


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> EtaModel:
    outcome = write_small_artifact(tmp_path_factory.mktemp("mlflow") / "a")
    return load_artifact(outcome.artifact_dir)


@pytest.fixture(scope="module")
def exported(model: EtaModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_mlflow(model, tmp_path_factory.mktemp("export") / "eta-mlflow")


def test_the_pyfunc_predicts_what_etastream_predicts(model: EtaModel, exported: Path) -> None:
    x = rows(64)
    frame = pd.DataFrame(x, columns=model.feature_names)
    shuffled = frame[list(reversed(model.feature_names))]  # by name, not by position
    loaded = mlflow.pyfunc.load_model(str(exported))
    np.testing.assert_allclose(np.asarray(loaded.predict(shuffled)), model.predict(x), atol=1e-9)
    meta = loaded.metadata
    assert meta.metadata["feature_registry_hash"] == registry_hash()
    assert meta.metadata["etastream_model"] == f"{model.name}:{model.version}"
    assert meta.signature.inputs.input_names() == model.feature_names
    assert meta.saved_input_example_info is not None


def test_the_lightgbm_flavour_is_the_point_models_booster(model: EtaModel, exported: Path) -> None:
    booster = mlflow.lightgbm.load_model(str(exported))
    x = rows(16)
    np.testing.assert_allclose(booster.predict(x), model.booster.predict(x), atol=1e-9)


def test_an_mlflow_lightgbm_model_is_registered_and_served(
    model: EtaModel, exported: Path, tmp_path: Path
) -> None:
    registry = Registry(tmp_path / "models")
    version = import_mlflow(exported, registry, "imported")
    served = registry.load("imported", version)
    x = rows(32)  # a round trip: the export's target transform comes back with it
    np.testing.assert_allclose(served.predict(x), model.predict(x), atol=1e-9)
    assert served.target_transform == model.target_transform
    assert served.metadata["imported_from"]["mlflow"] == str(exported)


def test_a_model_with_other_inputs_is_refused_naming_the_first_difference(
    model: EtaModel, exported: Path, tmp_path: Path
) -> None:
    from mlflow.models import Model, ModelSignature
    from mlflow.types import ColSpec, Schema

    other = tmp_path / "other"
    shutil.copytree(exported, other)
    described = Model.load(str(other / "MLmodel"))
    names = list(model.feature_names)
    names[2] = "store__something_else"
    described.signature = ModelSignature(inputs=Schema([ColSpec("double", n) for n in names]))
    described.save(str(other / "MLmodel"))
    with pytest.raises(MlflowImportError, match="input 2 is 'store__something_else'"):
        import_mlflow(other, Registry(tmp_path / "models"), "imported")


def test_a_directory_that_is_not_a_lightgbm_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MlflowImportError, match="no MLmodel file"):
        import_mlflow(tmp_path, Registry(tmp_path / "models"), "imported")

"""MLflow interop: an etastream model as an MLflow model, and an MLflow LightGBM model into the
registry. Optional: ``pip install -e '.[mlflow]'`` (mlflow-skinny and pandas).

An exported model carries two flavours. ``python_function`` is etastream's own scoring: it
takes a frame with the feature registry's columns (in any order), puts them in the model's
order and predicts seconds as ``eta`` does (the target transform applied), so
``mlflow.pyfunc.load_model(DIR).predict(frame)`` equals etastream's predictions. ``lightgbm``
is the point model's booster as ``mlflow.lightgbm`` saves one, for tools that want the trees;
it predicts in the model's training space (log seconds for a model trained on them, which the
metadata's ``target_transform`` says). The metadata also carries the feature-registry hash and
etastream's version, and the signature names every input.

An imported model must be a LightGBM flavour whose signature names exactly the registry's
features in its order (the booster knows positions, not names): anything else is refused,
saying why. It is registered as predicting seconds directly (``target_transform`` identity),
unless its MLmodel metadata says otherwise (an etastream export does): a round trip through
MLflow gives the same predictions.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from datetime import UTC, datetime
from importlib import metadata as dist
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from predictor.models.artifact import EtaModel, load_artifact, write_artifact
from predictor.models.registry import Registry
from stream_features.definitions import feature_names, registry_hash
from stream_features.errors import EtaError

__all__ = ["MlflowImportError", "export_mlflow", "import_mlflow"]

_ARTIFACT = "etastream_artifact"
_BOOSTER = "lightgbm/model.lgb"


class MlflowImportError(EtaError):
    """An MLflow model that etastream cannot serve, and why."""

    http_status = 422

    def __init__(self, directory: Path, reason: str) -> None:
        self.directory, self.reason = directory, reason
        super().__init__(f"{directory}: {reason}")


def _etastream_version() -> str:
    try:
        return dist.version("etastream")
    except dist.PackageNotFoundError:  # a checkout that was never installed
        return "unknown"


class _EtaPyfunc:  # mlflow.pyfunc.PythonModel, subclassed lazily (mlflow is optional)
    """etastream's scoring behind MLflow's pyfunc interface."""

    model: EtaModel

    def load_context(self, context: Any) -> None:
        self.model = load_artifact(Path(context.artifacts[_ARTIFACT]))

    # no type hints: MLflow would read them as the input's schema; the signature says it
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]  # above
        values = model_input[self.model.feature_names].to_numpy(dtype=np.float64)
        return self.model.predict(values)


def _mlflow_pyfunc() -> Any:
    """``mlflow.pyfunc``, imported without the UserWarnings MLflow's own modules raise about
    their type hints as they load (nothing of ours: pytest would fail on them)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow(\.|$)")
        import mlflow.pyfunc
    return mlflow.pyfunc


def _pyfunc() -> Any:
    mlflow_pyfunc = _mlflow_pyfunc()
    return type("EtaPyfunc", (_EtaPyfunc, mlflow_pyfunc.PythonModel), {"__module__": __name__})()


def export_mlflow(model: EtaModel, out: Path) -> Path:
    """Write ``model`` as an MLflow model directory at ``out`` (which must not exist)."""
    import pandas as pd

    pyfunc = _mlflow_pyfunc()
    from mlflow.models import Model, ModelSignature
    from mlflow.types import ColSpec, Schema

    if out.exists():
        raise FileExistsError(f"{out} exists: MLflow writes a model into a new directory")
    names = model.feature_names
    signature = ModelSignature(
        inputs=Schema([ColSpec("double", name) for name in names]),
        outputs=Schema([ColSpec("double", "predicted_duration_s")]),
    )
    example = pd.DataFrame([np.zeros(len(names))], columns=names)
    with warnings.catch_warnings():  # its advice on type hints: the signature below is given
        warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow\.")
        _save(pyfunc, out, model, signature, example)
    (out / _BOOSTER).parent.mkdir(parents=True, exist_ok=True)
    model.booster.save_model(str(out / _BOOSTER))
    described = Model.load(str(out / "MLmodel"))
    described.add_flavor(
        "lightgbm", lgb_version=lgb.__version__, data=_BOOSTER, model_class="lightgbm.basic.Booster"
    )
    described.save(str(out / "MLmodel"))
    return out


def _save(pyfunc: Any, out: Path, model: EtaModel, signature: Any, example: Any) -> None:
    pyfunc.save_model(
        path=str(out),
        python_model=_pyfunc(),
        artifacts={_ARTIFACT: str(model.path)},
        signature=signature,
        input_example=example,
        metadata={
            "etastream_model": f"{model.name}:{model.version}",
            "etastream_version": _etastream_version(),
            "feature_registry_hash": str(model.metadata["feature_registry_hash"]),
            "target_transform": model.target_transform,
        },
        pip_requirements=[f"etastream=={_etastream_version()}", f"lightgbm=={lgb.__version__}"],
    )


def import_mlflow(directory: Path, registry: Registry, name: str) -> str:
    """Register an MLflow LightGBM model as the next version of ``name``; returns the version."""
    _mlflow_pyfunc()
    from mlflow.models import Model

    if not (directory / "MLmodel").is_file():
        raise MlflowImportError(directory, "no MLmodel file: not an MLflow model directory")
    described = Model.load(str(directory / "MLmodel"))
    flavour = described.flavors.get("lightgbm")
    if flavour is None:
        raise MlflowImportError(
            directory,
            f"not a LightGBM model (its flavours: {', '.join(sorted(described.flavors))})",
        )
    if described.signature is None:
        raise MlflowImportError(
            directory, "no signature: which input is which feature cannot be told"
        )
    given, wanted = described.signature.inputs.input_names(), feature_names()
    if given != wanted:
        where = next(
            (i for i, (a, b) in enumerate(zip(given, wanted, strict=False)) if a != b),
            min(len(given), len(wanted)),
        )
        got = given[where] if where < len(given) else "(none)"
        want = wanted[where] if where < len(wanted) else "(none)"
        raise MlflowImportError(
            directory,
            f"its {len(given)} inputs are not the feature registry's {len(wanted)} in order: "
            f"input {where} is {got!r}, the registry's is {want!r}",
        )
    # an etastream export says its booster's space; any other model is taken to predict seconds
    transform = str((described.metadata or {}).get("target_transform", "identity"))
    if transform not in ("identity", "log1p"):
        raise MlflowImportError(directory, f"unknown target_transform {transform!r} in MLmodel")
    booster = lgb.Booster(model_file=str(directory / flavour["data"]))
    if booster.num_feature() != len(wanted):
        raise MlflowImportError(
            directory, f"the booster takes {booster.num_feature()} features, not {len(wanted)}"
        )
    staging = Path(tempfile.mkdtemp(prefix="mlflow-import-"))
    try:
        write_artifact(
            staging,
            booster.model_to_string(),
            {
                "name": name,
                "feature_names": wanted,
                "feature_registry_hash": registry_hash(),
                "target_transform": transform,
                "objective": str(booster.dump_model().get("objective", "unknown")),
                "num_trees": booster.num_trees(),
                "created_at": datetime.now(UTC).isoformat(),
                "training_set": f"MLflow model {directory}",
                "libraries": {"lightgbm": lgb.__version__},
                "imported_from": {"mlflow": str(directory), "run_id": described.run_id},
            },
        )
        return registry.register(staging, name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

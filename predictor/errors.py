"""The predictor's errors, all under ``stream_features.errors.EtaError``.

Each one builds its own message: what happened, the values involved, and what to do about it.

EtaError                          http_status 500
├── TrainingSetError              422  a training set that cannot be trained on
├── ModelNotBetterError           500  the trained model does not beat a baseline
├── ArtifactError                 500  an artifact directory that is not a valid artifact
│   ├── ArtifactTamperedError     500  a file's SHA-256 differs from checksum.sha256
│   └── FeatureRegistryMismatch   500  trained under other feature definitions
├── RegistryNameError             422  a model name, version or stage that is not allowed
├── ModelNotFoundError            404  no such model name or version in the registry
├── StageNotSetError              404  the alias points at nothing
├── NothingToRollBackError        409  the alias has no earlier version in its history
├── CompiledScoringError          500  lleaves missing, failed, or disagrees with LightGBM
├── ExplainUnavailable            409  the model cannot give contributions in seconds
└── OutputWriteError              507  a result file could not be written (e.g. the disk is full)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stream_features.errors import EtaError

__all__ = [
    "ArtifactError",
    "ArtifactTamperedError",
    "CompiledScoringError",
    "ExplainUnavailable",
    "FeatureRegistryMismatch",
    "ModelNotBetterError",
    "ModelNotFoundError",
    "NothingToRollBackError",
    "OutputWriteError",
    "RegistryNameError",
    "StageNotSetError",
    "TrainingSetError",
]


class TrainingSetError(EtaError):
    http_status = 422

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path, self.reason = str(path), reason
        super().__init__(
            f"training set {self.path!r} cannot be used: {reason}; build it with "
            "`eta features training-set` or fix the file"
        )


class ModelNotBetterError(EtaError):
    def __init__(
        self,
        metric: str,
        model: float,
        baselines: dict[str, float],
        metrics: dict[str, Any] | None = None,
    ) -> None:
        self.metric, self.model, self.baselines = metric, model, baselines
        self.metrics = metrics
        """Every validation metric of the model and the baselines, for the report."""
        worse = ", ".join(f"{k} {v:.1f}" for k, v in baselines.items() if v <= model)
        super().__init__(
            f"the model's validation {metric} is {model:.1f}, not better than {worse}; "
            "it was not registered (check the training set, or pass --force to keep it anyway)"
        )


class ArtifactError(EtaError):
    def __init__(self, path: str | Path, reason: str) -> None:
        self.path, self.reason = str(path), reason
        super().__init__(f"{self.path} is not a usable model artifact: {reason}")


class ArtifactTamperedError(ArtifactError):
    def __init__(self, path: str | Path, file: str, expected: str, actual: str) -> None:
        self.file, self.expected, self.actual = file, expected, actual
        super().__init__(
            path,
            f"{file} has SHA-256 {actual[:16]}…, checksum.sha256 says {expected[:16]}…; "
            "the file was changed after the artifact was written — do not serve it, "
            "re-register the artifact from its training run",
        )


class FeatureRegistryMismatch(ArtifactError):
    def __init__(self, path: str | Path, artifact_hash: str, running_hash: str) -> None:
        self.artifact_hash, self.running_hash = artifact_hash, running_hash
        super().__init__(
            path,
            f"it was trained under feature registry {artifact_hash}, the running code has "
            f"{running_hash}; its inputs would mean something else — retrain it on a training "
            "set built by this code, or serve it with the code it was trained with",
        )


class RegistryNameError(EtaError):
    http_status = 422

    def __init__(self, kind: str, value: str) -> None:
        self.kind, self.value = kind, value
        super().__init__(
            f"{kind} {value!r} is not allowed: use 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit (no '/', no '..')"
        )


class ModelNotFoundError(EtaError):
    http_status = 404

    def __init__(self, root: str | Path, name: str, version: str | None = None) -> None:
        self.root, self.name, self.version = str(root), name, version
        what = f"{name}:{version}" if version is not None else name
        super().__init__(
            f"model {what} is not in the registry at {self.root}; "
            "`eta models list` shows what is there"
        )


class StageNotSetError(EtaError):
    http_status = 404

    def __init__(self, name: str, stage: str) -> None:
        self.name, self.stage = name, stage
        super().__init__(
            f"no version of {name!r} is at stage {stage!r}; "
            f"run `eta models promote VERSION --stage {stage} --name {name}`"
        )


class NothingToRollBackError(EtaError):
    http_status = 409

    def __init__(self, name: str, stage: str, current: str | None) -> None:
        self.name, self.stage, self.current = name, stage, current
        super().__init__(
            f"{name}@{stage} (now {current or 'unset'}) has no earlier version in its "
            "history to go back to; promote a version explicitly instead"
        )


class CompiledScoringError(EtaError):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(
            f"compiled scoring is not available: {reason}; set ETA_SCORING=lightgbm (or auto "
            "to fall back by itself), or `pip install 'etastream[compiled]'` "
            "(`pip install -e '.[compiled]'` in a checkout)"
        )


class ExplainUnavailable(EtaError):
    http_status = 409

    def __init__(self, model: str, why: str) -> None:
        self.model, self.why = model, why
        super().__init__(
            f"model {model} cannot explain its predictions: {why}; ask without explain=true, "
            "or serve a model trained on seconds (any objective but log_l2)"
        )


class OutputWriteError(EtaError):
    """A result (a batch run's Parquet, a report) could not be written; what was there before
    is left as it was."""

    http_status = 507

    def __init__(self, path: Path, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(
            f"cannot write {path}: {reason}; nothing was replaced (the previous output is "
            "intact). Free space there or point the output elsewhere, then run again"
        )

    @classmethod
    def of(cls, path: Path, exc: BaseException) -> OutputWriteError:
        """From an OSError (its strerror) or a Polars I/O error (its message).

        >>> str(OutputWriteError.of(Path("/o/x"), OSError(28, "No space left on device")))[:40]
        'cannot write /o/x: No space left on devi'
        """
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return cls(path, reason)

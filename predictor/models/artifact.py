"""The model artifact: a directory anyone can read, and that refuses to load when changed.

Layout::

    model.txt         LightGBM's text model (never a pickle: no code runs on load)
    model_p10.txt     optional: the ETA range's bound models (quantile LightGBM, text too),
    model_p90.txt       with their conformal offset in ``metadata["range"]``
    metadata.json     name, version, features + dtypes, feature-registry hash, training window,
                      metrics and baselines, library versions, reference distributions
    checksum.sha256   ``<sha256>  <file>`` per file above (``sha256sum -c`` reads it)
    compiled/         optional cache of compiled scorers, keyed by the model's checksum

Loading checks every checksum before parsing anything, then that the features the model was
trained under are the ones the running code builds.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import orjson

from predictor.errors import ArtifactError, ArtifactTamperedError, FeatureRegistryMismatch
from stream_features.definitions import registry_hash

__all__ = [
    "CHECKSUM_FILE",
    "LOWER_FILE",
    "METADATA_FILE",
    "MODEL_FILE",
    "RANGE_FILES",
    "UPPER_FILE",
    "EtaModel",
    "atomic_write",
    "finish_predictions",
    "load_artifact",
    "range_bounds",
    "range_texts",
    "read_metadata",
    "verify_checksums",
    "write_artifact",
]

MODEL_FILE, METADATA_FILE, CHECKSUM_FILE = "model.txt", "metadata.json", "checksum.sha256"
LOWER_FILE, UPPER_FILE = "model_p10.txt", "model_p90.txt"
RANGE_FILES = (LOWER_FILE, UPPER_FILE)
_COVERED = (MODEL_FILE, METADATA_FILE)
"""Every artifact has these; the range files are covered too when the artifact has a range."""
Array = npt.NDArray[np.float64]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` in one step: readers see the old or the new file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; artifacts are meant to be read by services
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_artifact(
    directory: Path,
    model_text: str,
    metadata: dict[str, Any],
    range_models: dict[str, str] | None = None,
) -> Path:
    """Write (or rewrite) the model, its metadata, the range's bound models (``RANGE_FILES``
    name -> text, when given) and the checksums over them all."""
    if range_models and set(range_models) != set(RANGE_FILES):
        raise ValueError(
            f"range_models must hold exactly {RANGE_FILES}, got {sorted(range_models)}"
        )
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write(directory / MODEL_FILE, model_text.encode())
    for name, text in (range_models or {}).items():
        atomic_write(directory / name, text.encode())
    atomic_write(
        directory / METADATA_FILE,
        orjson.dumps(metadata, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS),
    )
    covered = (*_COVERED, *(RANGE_FILES if range_models else ()))
    lines = "".join(f"{_sha256(directory / name)}  {name}\n" for name in covered)
    atomic_write(directory / CHECKSUM_FILE, lines.encode())
    return directory


def verify_checksums(directory: Path) -> dict[str, str]:
    """Every covered file's SHA-256, after checking each against ``checksum.sha256``."""
    if not directory.is_dir():
        raise ArtifactError(directory, "no such directory")
    listing = directory / CHECKSUM_FILE
    if not listing.is_file():
        raise ArtifactError(directory, f"{CHECKSUM_FILE} is missing; it cannot be verified")
    expected: dict[str, str] = {}
    for number, line in enumerate(listing.read_text().splitlines(), start=1):
        digest, _, name = line.partition("  ")
        if name not in (*_COVERED, *RANGE_FILES) or len(digest) != 64:
            raise ArtifactError(directory, f"{CHECKSUM_FILE} line {number} is not valid: {line!r}")
        expected[name] = digest
    for name in _COVERED:
        if name not in expected:
            raise ArtifactError(directory, f"{CHECKSUM_FILE} does not cover {name}")
    for name in expected:
        if not (directory / name).is_file():
            raise ArtifactError(directory, f"{name} is missing")
        actual = _sha256(directory / name)
        if actual != expected[name]:
            raise ArtifactTamperedError(directory, name, expected[name], actual)
    return expected


def read_metadata(directory: Path) -> dict[str, Any]:
    """``metadata.json`` of an artifact, after verifying its checksums."""
    verify_checksums(directory)
    return _parse_metadata(directory)


_TRANSFORMS = ("identity", "log1p")


def _parse_metadata(directory: Path) -> dict[str, Any]:
    try:
        metadata = orjson.loads((directory / METADATA_FILE).read_bytes())
    except orjson.JSONDecodeError as exc:
        raise ArtifactError(directory, f"{METADATA_FILE} is not JSON ({exc})") from exc
    required = ("name", "feature_names", "feature_registry_hash", "target_transform")
    if not isinstance(metadata, dict) or any(k not in metadata for k in required):
        raise ArtifactError(directory, f"{METADATA_FILE} lacks one of {', '.join(required)}")
    names = metadata["feature_names"]
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise ArtifactError(directory, f"{METADATA_FILE}: feature_names is not a list of names")
    if not isinstance(metadata["name"], str) or not isinstance(
        metadata["feature_registry_hash"], str
    ):
        raise ArtifactError(directory, f"{METADATA_FILE}: name and feature_registry_hash are text")
    if metadata["target_transform"] not in _TRANSFORMS:  # an unknown one would score as identity
        raise ArtifactError(
            directory,
            f"{METADATA_FILE}: target_transform {metadata['target_transform']!r} is not one of "
            f"{', '.join(_TRANSFORMS)}",
        )
    if "range" in metadata:
        _check_range(directory, metadata["range"])
    return metadata


def _check_range(directory: Path, spec: Any) -> None:
    if not isinstance(spec, dict):
        spec = {}
    offset = spec.get("conformal_offset_s")  # 0.0 is a valid offset
    files = [(spec.get(side) or {}).get("file") for side in ("lower", "upper")]
    if not (isinstance(offset, int | float) and np.isfinite(offset)) or files != list(RANGE_FILES):
        raise ArtifactError(
            directory,
            f"{METADATA_FILE}: range needs a finite conformal_offset_s and lower/upper files "
            f"{', '.join(RANGE_FILES)}",
        )


def range_texts(directory: Path, metadata: dict[str, Any]) -> dict[str, str] | None:
    """The range's bound models of a verified artifact (None when it has no range)."""
    if "range" not in metadata:
        return None
    return {name: _model_text(directory, name) for name in RANGE_FILES}


def _model_text(directory: Path, name: str = MODEL_FILE) -> str:
    """A model file as text. LightGBM's text format is the only one ever loaded: a pickle or
    joblib file (binary, and code on load) is refused before anything parses it."""
    raw = (directory / name).read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        kind = "a pickle" if raw[:1] == b"\x80" else "binary data"
        raise ArtifactError(
            directory,
            f"{name} is {kind}, not LightGBM's text model; only text models are loaded "
            "(write it with Booster.save_model, never pickle or joblib)",
        ) from None


def range_bounds(point: Array, raw_lower: Array, raw_upper: Array, offset_s: float) -> Array:
    """The range around each point ETA: the bound models' seconds moved out by the conformal
    ``offset_s``, clipped so it never excludes the point and never starts below zero; shape
    (2, n): lower, upper. Every serving path goes through here.

    >>> range_bounds(np.array([600.0, 900.0]), np.array([500.0, 950.0]),
    ...              np.array([800.0, 990.0]), 60.0)
    array([[ 440.,  890.],
           [ 860., 1050.]])
    """
    lower = np.minimum(np.maximum(raw_lower - offset_s, 0.0), point)
    upper = np.maximum(raw_upper + offset_s, point)
    return np.stack([lower, upper])


def finish_predictions(raw: Any, transform: str) -> Array:
    """Raw model output to seconds: undo the target transform, clip at zero.

    >>> finish_predictions(np.array([-5.0, 60.0]), "identity")
    array([ 0., 60.])
    """
    out = np.asarray(raw, dtype=np.float64)
    if transform == "log1p":
        out = np.expm1(out)
    return np.maximum(out, 0.0)


RawPredict = Callable[[Array], Any]


class EtaModel:
    """A loaded, verified model: what serving calls ``predict`` on, one batch at a time.

    With a range (``has_range``), ``predict_range`` scores the point model and both bound
    models over the same rows, three vectorised calls of one engine per batch.
    """

    def __init__(
        self,
        path: Path,
        metadata: dict[str, Any],
        booster: lgb.Booster,
        model_sha256: str,
        raw_predict: RawPredict | None = None,
        backend: str = "lightgbm",
        scoring_info: dict[str, Any] | None = None,
        *,
        bounds: tuple[lgb.Booster, lgb.Booster] | None = None,
        raw_bounds: tuple[RawPredict, RawPredict] | None = None,
        file_sha256: dict[str, str] | None = None,
    ) -> None:
        self.path, self.metadata, self.booster = path, metadata, booster
        self.model_sha256, self.backend = model_sha256, backend
        self.scoring_info: dict[str, Any] = scoring_info or {}
        self.name: str = str(metadata["name"])
        self.version: str = str(metadata.get("version") or "unregistered")
        self.feature_names: list[str] = list(metadata["feature_names"])
        self.target_transform = str(metadata["target_transform"])
        self._raw = raw_predict or booster.predict
        self.bounds = bounds
        self.file_sha256: dict[str, str] = file_sha256 or {MODEL_FILE: model_sha256}
        self.range_offset_s = float(metadata["range"]["conformal_offset_s"]) if bounds else 0.0
        self._raw_bounds = raw_bounds or (
            (bounds[0].predict, bounds[1].predict) if bounds is not None else None
        )

    @property
    def has_range(self) -> bool:
        return self.bounds is not None

    def with_backend(
        self,
        raw_predict: RawPredict,
        backend: str,
        info: dict[str, Any],
        raw_bounds: tuple[RawPredict, RawPredict] | None = None,
    ) -> EtaModel:
        """The same model scored by another engine (see ``compiled``)."""
        return EtaModel(
            self.path,
            self.metadata,
            self.booster,
            self.model_sha256,
            raw_predict,
            backend,
            info,
            bounds=self.bounds,
            raw_bounds=raw_bounds,
            file_sha256=self.file_sha256,
        )

    def _check(self, values: Array) -> Array:
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != len(self.feature_names):
            raise ValueError(
                f"{self.name}:{self.version} takes rows of {len(self.feature_names)} features "
                f"in feature_names() order, got an array of shape {values.shape}"
            )
        return values

    def predict(self, values: Array) -> Array:
        """Seconds from created to delivered for each row of ``values`` (n, f), clipped >= 0."""
        values = self._check(values)
        if values.shape[0] == 0:
            return np.empty(0, dtype=np.float64)
        return finish_predictions(self._raw(values), self.target_transform)

    def predict_range(self, values: Array) -> tuple[Array, Array | None]:
        """``predict`` and, when the artifact has a range, its bounds (2, n): p10, p90."""
        values = self._check(values)
        if values.shape[0] == 0:
            return np.empty(0), (np.empty((2, 0)) if self.has_range else None)
        point = finish_predictions(self._raw(values), self.target_transform)
        if self._raw_bounds is None:
            return point, None
        lower = np.asarray(self._raw_bounds[0](values), dtype=np.float64)
        upper = np.asarray(self._raw_bounds[1](values), dtype=np.float64)
        return point, range_bounds(point, lower, upper, self.range_offset_s)

    def predict_lightgbm(self, values: Array) -> Array:
        """LightGBM's own answer, whatever the backend: the reference for parity checks."""
        values = self._check(values)
        return finish_predictions(self.booster.predict(values), self.target_transform)

    def __repr__(self) -> str:
        return f"EtaModel({self.name}:{self.version}, {self.backend}, {self.path})"


def _booster(directory: Path, name: str) -> lgb.Booster:
    try:
        return lgb.Booster(model_str=_model_text(directory, name))
    except lgb.basic.LightGBMError as exc:
        raise ArtifactError(directory, f"LightGBM cannot read {name} ({exc})") from exc


def load_artifact(directory: Path, expected_registry_hash: str | None = None) -> EtaModel:
    """Verify and load an artifact; refuse one trained under other feature definitions."""
    checksums = verify_checksums(directory)
    metadata = _parse_metadata(directory)
    running = expected_registry_hash or registry_hash()
    if metadata["feature_registry_hash"] != running:
        raise FeatureRegistryMismatch(directory, str(metadata["feature_registry_hash"]), running)
    names = [MODEL_FILE, *(RANGE_FILES if "range" in metadata else ())]
    uncovered = [n for n in names if n not in checksums]
    if uncovered:
        raise ArtifactError(directory, f"{CHECKSUM_FILE} does not cover {', '.join(uncovered)}")
    booster, *bounds = [_booster(directory, name) for name in names]
    for name, model in zip(names, [booster, *bounds], strict=True):
        if model.num_feature() != len(metadata["feature_names"]):
            raise ArtifactError(
                directory,
                f"{name} takes {model.num_feature()} features, metadata lists "
                f"{len(metadata['feature_names'])}",
            )
    return EtaModel(
        directory,
        metadata,
        booster,
        checksums[MODEL_FILE],
        bounds=(bounds[0], bounds[1]) if bounds else None,
        file_sha256={n: checksums[n] for n in names},
    )

"""Registry safety: names stay single path components, loads stay inside the root (symlinks
resolved), the model file is LightGBM text and never a pickle, and a changed artifact is
refused. (``test_models_registry.py`` covers the ordinary bad names and a tampered model.txt.)
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import zlib
from pathlib import Path
from typing import Any

import orjson
import pytest

from predictor.errors import ArtifactError, ArtifactTamperedError, RegistryNameError
from predictor.models.artifact import CHECKSUM_FILE, RANGE_FILES, load_artifact
from predictor.models.registry import Registry, check_name
from tests.unit._training_data import write_small_artifact


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_small_artifact(tmp_path_factory.mktemp("artifact") / "a").artifact_dir


@pytest.fixture()
def registry(tmp_path: Path, artifact: Path) -> Registry:
    registry = Registry(tmp_path / "models")
    registry.register(artifact)
    return registry


def reseal(directory: Path) -> None:
    """Rewrite checksum.sha256 over the current files: what a writer with registry access can
    do, and why the checksum is a corruption check, not a signature (docs/security.md)."""
    lines = "".join(
        f"{hashlib.sha256((directory / n).read_bytes()).hexdigest()}  {n}\n"
        for n in ("model.txt", "metadata.json", *RANGE_FILES)
        if (directory / n).exists()
    )
    (directory / CHECKSUM_FILE).write_text(lines)


HOSTILE_NAMES = [
    "../../x",
    "eta/../../x",
    "/etc/passwd",
    "//server/share",
    "C:\\models",
    "eta\x00.txt",
    "eta\n",
    "eta\r",
    " eta",
    "~root",
    "%2e%2e",
    "..%2f..%2fx",
    "ｅｔａ",  # full-width letters
    "eta\u2215x",  # division slash, looks like '/'
    "eta\u202ex",  # right-to-left override
    "e" * 65,
    "",
    ".",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=[repr(n)[:24] for n in HOSTILE_NAMES])
def test_check_name_refuses_anything_but_one_plain_path_component(name: str) -> None:
    with pytest.raises(RegistryNameError) as caught:
        check_name("model name", name)
    assert "is not allowed" in str(caught.value)
    assert "\x00" not in str(caught.value) and "\n" not in str(caught.value)  # shown by repr


@pytest.mark.parametrize("value", [None, 3, b"eta", ["eta"]])
def test_check_name_refuses_what_is_not_text(value: Any) -> None:
    with pytest.raises(RegistryNameError):
        check_name("version", value)


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=[repr(n)[:24] for n in HOSTILE_NAMES])
def test_every_registry_door_refuses_a_hostile_name_and_writes_nothing(
    registry: Registry, artifact: Path, name: str, tmp_path: Path
) -> None:
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    doors = [
        lambda: registry.register(artifact, name=name),
        lambda: registry.load(name, "1"),
        lambda: registry.load("eta", name),
        lambda: registry.path("eta", name),
        lambda: registry.promote("eta", "1", name),
        lambda: registry.promote("eta", name, "production"),
        lambda: registry.rollback("eta", name),
        lambda: registry.resolve("eta", name),
        lambda: registry.live_version("eta", name),
        lambda: registry.versions(name),
        lambda: registry.aliases(name),
        lambda: registry.history(name),
    ]
    for door in doors:
        with pytest.raises(RegistryNameError):
            door()
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_a_metadata_name_that_escapes_is_refused_at_registration(
    registry: Registry, artifact: Path, tmp_path: Path
) -> None:
    foreign = Path(shutil.copytree(artifact, tmp_path / "foreign"))
    meta = orjson.loads((foreign / "metadata.json").read_bytes())
    (foreign / "metadata.json").write_bytes(orjson.dumps({**meta, "name": "../../escaped"}))
    reseal(foreign)

    with pytest.raises(RegistryNameError):
        registry.register(foreign)
    assert not (tmp_path / "escaped").exists()


def test_a_stage_pointer_to_a_path_is_never_followed(registry: Registry) -> None:
    """aliases.json (or the Redis pointer, tested with Redis) naming ../../x loads nothing."""
    (registry.root / "eta" / "aliases.json").write_bytes(orjson.dumps({"production": "../../x"}))

    version = registry.resolve("eta", "production")
    with pytest.raises(RegistryNameError):
        registry.load("eta", version)


# --- inside the root, symlinks resolved --------------------------------------------------------


@pytest.mark.parametrize("file", ["model.txt", "metadata.json", "checksum.sha256"])
def test_a_file_symlinked_outside_the_root_is_refused(
    registry: Registry, tmp_path: Path, file: str
) -> None:
    version_dir = registry.root / "eta" / "1"
    outside = tmp_path / f"outside-{file}"
    shutil.copy(version_dir / file, outside)  # the same bytes: checksums would still match
    (version_dir / file).unlink()
    (version_dir / file).symlink_to(outside)

    with pytest.raises(ArtifactError, match="outside the registry"):
        registry.load("eta", "1")
    with pytest.raises(ArtifactError, match="outside the registry"):
        registry.promote("eta", "1", "production")


def test_a_compiled_cache_symlinked_outside_the_root_is_refused(
    registry: Registry, tmp_path: Path
) -> None:
    """The compiled cache is machine code lleaves loads: it must come from the root too."""
    outside = tmp_path / "outside-compiled"
    outside.mkdir()
    (outside / "lleaves-x.bin").write_bytes(b"\x7fELF")
    compiled = registry.root / "eta" / "1" / "compiled"
    compiled.mkdir()
    (compiled / "lleaves-x.bin").symlink_to(outside / "lleaves-x.bin")

    with pytest.raises(ArtifactError, match=r"compiled/lleaves-x\.bin leads to"):
        registry.load("eta", "1")
    shutil.rmtree(compiled)
    compiled.symlink_to(outside, target_is_directory=True)
    with pytest.raises(ArtifactError, match="compiled leads to"):
        registry.load("eta", "1")


def test_a_model_name_symlinked_outside_the_root_is_refused(
    registry: Registry, artifact: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere"
    shutil.copytree(registry.root / "eta", outside)
    (registry.root / "other").symlink_to(outside, target_is_directory=True)

    with pytest.raises(RegistryNameError):
        registry.load("other", "1")


def test_symlinks_within_the_root_still_load(registry: Registry, artifact: Path) -> None:
    registry.register(artifact)
    second = registry.root / "eta" / "2"
    (second / "model.txt").unlink()
    (second / "model.txt").symlink_to(registry.root / "eta" / "1" / "model.txt")

    assert registry.load("eta", "2").version == "2"


# --- LightGBM text, never pickle ---------------------------------------------------------------


class Payload:
    """A pickle that would create a file if anything ever unpickled it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize(
    ("kind", "encode", "reason"),
    [
        ("pickle", lambda p: pickle.dumps(p, protocol=pickle.HIGHEST_PROTOCOL), "is a pickle"),
        ("pickle-ascii", lambda p: pickle.dumps(p, protocol=0), "LightGBM cannot read"),
        ("joblib-zlib", lambda p: zlib.compress(pickle.dumps(p)), "is binary data"),
    ],
)
def test_a_pickled_model_is_refused_and_never_unpickled(
    registry: Registry, tmp_path: Path, kind: str, encode: Any, reason: str
) -> None:
    marker = tmp_path / f"unpickled-{kind}"
    version_dir = registry.root / "eta" / "1"
    (version_dir / "model.txt").write_bytes(encode(Payload(marker)))
    reseal(version_dir)  # even with matching checksums

    with pytest.raises(ArtifactError, match=reason):
        registry.load("eta", "1")
    with pytest.raises(ArtifactError, match=reason):
        registry.register(version_dir, name="again")
    assert not marker.exists()
    assert registry.versions("again") == []


# --- tampering ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        lambda d: (d / "model.txt").write_bytes((d / "model.txt").read_bytes()[:-100]),
        lambda d: (d / "model.txt").write_bytes(b""),
        lambda d: (d / "metadata.json").write_bytes(b"{}"),
        lambda d: (d / "checksum.sha256").write_text(""),
        lambda d: (d / "checksum.sha256").write_text("0" * 64 + "  model.txt\n"),
        lambda d: (d / "checksum.sha256").write_text((d / "checksum.sha256").read_text().upper()),
    ],
    ids=["truncated", "emptied", "metadata-replaced", "no-sums", "sums-dropped", "sums-case"],
)
def test_a_changed_artifact_is_refused(registry: Registry, change: Any) -> None:
    change(registry.root / "eta" / "1")
    with pytest.raises(ArtifactError):
        registry.load("eta", "1")


def test_a_tampered_file_is_named_with_both_digests(registry: Registry) -> None:
    model = registry.root / "eta" / "1" / "model.txt"
    model.write_text(model.read_text().replace("leaf_value=", "leaf_value=9", 1))

    with pytest.raises(ArtifactTamperedError, match=r"model\.txt has SHA-256 [0-9a-f]{16}…"):
        registry.load("eta", "1")


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("feature_names", 5, "not a list of names"),
        ("feature_names", None, "not a list of names"),
        ("feature_names", [1, 2], "not a list of names"),
        ("name", {"a": 1}, "are text"),
        ("target_transform", "sqrt", "target_transform 'sqrt' is not one of"),
        ("target_transform", [], "is not one of"),
    ],
)
def test_resealed_metadata_of_the_wrong_shape_is_refused_not_misread(
    registry: Registry, field: str, value: Any, reason: str
) -> None:
    """Checksums cannot catch a resealed file; loading still refuses what it cannot mean
    (an unknown target_transform would have been scored as identity)."""
    version_dir = registry.root / "eta" / "1"
    meta = orjson.loads((version_dir / "metadata.json").read_bytes())
    (version_dir / "metadata.json").write_bytes(orjson.dumps({**meta, field: value}))
    reseal(version_dir)

    with pytest.raises(ArtifactError, match=reason):
        load_artifact(version_dir)

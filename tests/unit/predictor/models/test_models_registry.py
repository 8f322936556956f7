"""The local registry: versions, stage aliases, history, rollback and name safety."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pytest

from predictor.errors import (
    ArtifactTamperedError,
    ModelNotFoundError,
    NothingToRollBackError,
    RegistryNameError,
    StageNotSetError,
)
from predictor.models.registry import Registry
from tests.unit._training_data import write_small_artifact


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_small_artifact(tmp_path_factory.mktemp("artifact") / "a").artifact_dir


@pytest.fixture()
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "models")


def test_versions_count_up_and_are_never_reused(registry: Registry, artifact: Path) -> None:
    assert [registry.register(artifact) for _ in range(3)] == ["1", "2", "3"]
    shutil.rmtree(registry.root / "eta" / "3")

    assert registry.register(artifact) == "4"
    assert registry.versions("eta") == ["1", "2", "4"]
    assert registry.load("eta", "4").version == "4"
    assert registry.load("eta", "4").name == "eta"


def test_several_model_names_live_side_by_side(registry: Registry, artifact: Path) -> None:
    registry.register(artifact)
    assert registry.register(artifact, name="eta-pickup") == "1"
    registry.promote("eta", "1", "production")

    assert registry.names() == ["eta", "eta-pickup"]
    assert registry.aliases("eta-pickup") == {}
    assert registry.load("eta-pickup", "1").name == "eta-pickup"


def test_promote_moves_the_alias_and_records_who_when_from_to(
    registry: Registry, artifact: Path
) -> None:
    for _ in range(2):
        registry.register(artifact)

    first = registry.promote("eta", "1", "production")
    second = registry.promote("eta", "2", "production")
    registry.promote("eta", "1", "staging")

    assert (first.from_version, first.to_version) == (None, "1")
    assert (second.from_version, second.to_version) == ("1", "2")
    assert not second.redis_updated  # no Redis client: local only, and the move says so
    assert registry.aliases("eta") == {"production": "2", "staging": "1"}
    assert registry.resolve("eta", "production") == "2"
    history = registry.history("eta", "production")
    assert [(m.from_version, m.to_version, m.action) for m in history] == [
        (None, "1", "promote"),
        ("1", "2", "promote"),
    ]
    assert all(m.who and m.at.endswith("+00:00") for m in history)
    assert [p.name for p in (registry.root / "eta").iterdir() if p.name.startswith(".")] == [
        ".lock"
    ]


def test_promoting_the_current_version_again_changes_nothing(
    registry: Registry, artifact: Path
) -> None:
    registry.register(artifact)
    registry.promote("eta", "1", "production")
    registry.promote("eta", "1", "production")

    assert len(registry.history("eta")) == 1


def test_rollback_walks_back_through_the_stage_history(registry: Registry, artifact: Path) -> None:
    for _ in range(3):
        registry.register(artifact)
    for version in ("1", "2", "3"):
        registry.promote("eta", version, "production")

    assert registry.rollback("eta").to_version == "2"
    assert registry.rollback("eta").to_version == "1"
    with pytest.raises(NothingToRollBackError, match="now 1"):
        registry.rollback("eta")
    assert registry.resolve("eta", "production") == "1"
    registry.promote("eta", "3", "production")
    assert registry.rollback("eta", "production").to_version == "1"
    assert [m.action for m in registry.history("eta")][-2:] == ["promote", "rollback"]


def test_rollback_of_a_stage_without_history_says_so(registry: Registry, artifact: Path) -> None:
    registry.register(artifact)
    registry.promote("eta", "1", "staging")

    with pytest.raises(NothingToRollBackError, match="promote a version explicitly"):
        registry.rollback("eta", "staging")
    with pytest.raises(NothingToRollBackError, match="now unset"):
        registry.rollback("eta", "production")


def test_unknown_version_or_stage_is_a_clear_error(registry: Registry, artifact: Path) -> None:
    registry.register(artifact)

    with pytest.raises(ModelNotFoundError, match="eta:7 is not in the registry"):
        registry.promote("eta", "7", "production")
    with pytest.raises(StageNotSetError, match="eta models promote"):
        registry.resolve("eta", "production")
    with pytest.raises(ModelNotFoundError):
        registry.load("other", "1")


def test_a_tampered_version_cannot_be_promoted(registry: Registry, artifact: Path) -> None:
    registry.register(artifact)
    model_file = registry.root / "eta" / "1" / "model.txt"
    model_file.write_text(model_file.read_text() + "\n")

    with pytest.raises(ArtifactTamperedError):
        registry.promote("eta", "1", "production")
    assert registry.aliases("eta") == {}


@pytest.mark.parametrize(
    "bad", ["../../x", "..", "a/b", "", ".hidden", "x" * 65, "a\\b", "-x", "a b", "/etc"]
)
def test_names_that_could_escape_the_root_are_refused(
    registry: Registry, artifact: Path, bad: str
) -> None:
    registry.register(artifact)

    with pytest.raises(RegistryNameError, match="is not allowed"):
        registry.register(artifact, name=bad)
    with pytest.raises(RegistryNameError):
        registry.load("eta", bad)
    with pytest.raises(RegistryNameError):
        registry.promote("eta", "1", bad)
    with pytest.raises(RegistryNameError):
        registry.load(bad, "1")
    assert sorted(p.name for p in registry.root.iterdir()) == ["eta"]


def test_a_version_symlinked_outside_the_root_is_refused(
    registry: Registry, artifact: Path, tmp_path: Path
) -> None:
    registry.register(artifact)
    outside = Path(shutil.copytree(artifact, tmp_path / "outside"))
    (registry.root / "eta" / "9").symlink_to(outside, target_is_directory=True)

    with pytest.raises(RegistryNameError):
        registry.load("eta", "9")


def test_alias_file_is_plain_json(registry: Registry, artifact: Path) -> None:
    registry.register(artifact)
    registry.promote("eta", "1", "archived")

    assert orjson.loads((registry.root / "eta" / "aliases.json").read_bytes()) == {"archived": "1"}
    assert registry.live_version("eta", "archived") == "1"


def test_concurrent_registrations_get_distinct_versions(registry: Registry, artifact: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        versions = list(pool.map(lambda _: registry.register(artifact), range(8)))

    assert sorted(versions, key=int) == [str(v) for v in range(1, 9)]
    assert registry.versions("eta") == [str(v) for v in range(1, 9)]


def test_eta_models_show_marks_a_tampered_version_and_lists_the_rest(
    registry: Registry, artifact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from predictor.cli import app

    monkeypatch.setenv("ETA_REGISTRY_DIR", str(registry.root))
    monkeypatch.delenv("ETA_REDIS_URL", raising=False)
    registry.register(artifact)
    registry.register(artifact)
    registry.promote("eta", "2", "production")
    (registry.root / "eta" / "1" / "metadata.json").write_text("{}")

    shown = CliRunner().invoke(app, ["models", "show", "eta"], env={"COLUMNS": "200"})
    refused = CliRunner().invoke(app, ["models", "show", "eta:1"], env={"COLUMNS": "200"})
    rolled = CliRunner().invoke(app, ["models", "rollback"], env={"COLUMNS": "200"})

    assert shown.exit_code == 0, shown.output
    assert "unusable" in shown.output and "production" in shown.output
    assert refused.exit_code == 1 and "metadata.json has SHA-256" in refused.output
    assert rolled.exit_code == 1 and "no earlier version" in rolled.output


def test_eta_models_promote_refuses_a_stage_nobody_made(
    registry: Registry, artifact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """'--stage prod' for production would point an alias no service follows; a custom stage
    takes --new-stage, and is then known."""
    from typer.testing import CliRunner

    from predictor.cli import app

    monkeypatch.setenv("ETA_REGISTRY_DIR", str(registry.root))
    monkeypatch.delenv("ETA_REDIS_URL", raising=False)
    registry.register(artifact)
    env = {"COLUMNS": "200"}

    typo = CliRunner().invoke(app, ["models", "promote", "1", "--stage", "prod"], env=env)
    assert typo.exit_code == 2 and "has no stage 'prod'" in typo.output
    assert registry.aliases("eta") == {}

    made = ["models", "promote", "1", "--stage", "canary", "--new-stage"]
    assert CliRunner().invoke(app, made, env=env).exit_code == 0
    again = CliRunner().invoke(app, ["models", "promote", "1", "--stage", "canary"], env=env)
    standard = CliRunner().invoke(app, ["models", "promote", "1", "--stage", "staging"], env=env)
    assert again.exit_code == 0 and standard.exit_code == 0, again.output + standard.output
    assert registry.aliases("eta") == {"canary": "1", "staging": "1"}

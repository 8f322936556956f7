"""The README stays true: its test command is what CI runs, its tables match the code."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import stat
from types import ModuleType

import typer.main

from predictor.cli import app
from stream_features.settings import Settings
from tests.paths import ROOT

README = (ROOT / "README.md").read_text()
CI_RUN = ROOT / ".ci" / "run"


def _generator(name: str = "gen_settings_table") -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "docs" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _readme_commands() -> list[str]:
    """The one-line shell commands in the README's ```bash blocks."""
    blocks = re.findall(r"```bash\n(.*?)```", README, flags=re.DOTALL)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def _ci_test_command() -> list[str]:
    match = re.search(r"^test_command=\((.*)\)$", CI_RUN.read_text(), flags=re.MULTILINE)
    assert match, ".ci/run must define test_command=(...)"
    return shlex.split(match[1])


def test_ci_runs_the_readme_test_command() -> None:
    install_and_test = [c for c in _readme_commands() if c.startswith('pip install -e ".[test]"')]
    assert len(install_and_test) == 1, "the README names one way to run the tests"
    install, test = (part.strip() for part in install_and_test[0].split("&&"))

    assert shlex.split(test) == _ci_test_command() == ["python", "-m", "pytest"]
    script = CI_RUN.read_text()
    assert f"python -m {install}" in script
    assert '"${test_command[@]}"' in script


def test_ci_script_is_strict_and_executable() -> None:
    script = CI_RUN.read_text()
    assert script.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in script
    assert CI_RUN.stat().st_mode & stat.S_IXUSR
    assert re.search(r"^\s*5\)", script, flags=re.MULTILINE), "exit 5 (no tests) must fail CI"


def test_readme_settings_table_is_current() -> None:
    generator = _generator()
    assert generator.render_readme(README) == README, (
        "README's settings table is stale: run python docs/gen_settings_table.py --write"
    )
    for name in Settings.model_fields:
        assert f"`ETA_{name.upper()}" in README, name


def test_readme_benchmark_table_comes_from_the_bench_results() -> None:
    table = _generator("gen_bench_table").table()
    assert table in README, (
        "README's benchmark table differs from bench/results: run python docs/gen_bench_table.py "
        "--write"
    )
    assert "| `bench/stream.py` |" in table and "| `tests/reliability/` |" in table


def test_readme_lists_every_eta_command() -> None:
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]  # get_command types a click Command; the app's is a Group, which has commands
    missing = [name for name in commands if f"`eta {name}" not in README]
    assert not missing, f"add these to README's Commands table: {missing}"


def test_readme_examples_use_real_commands_and_options() -> None:
    """Every ``eta`` line in the README names a real command and only options it has."""
    examples = [c.split("#")[0].split() for c in _readme_commands() if c.startswith("eta ")]
    assert len(examples) >= 20
    for words in examples:
        command = typer.main.get_command(app)
        for word in words[1:]:
            if not hasattr(command, "get_command") or word.startswith("-"):
                break
            sub = command.get_command(None, word)
            assert sub is not None, f"{' '.join(words)}: no command {word!r}"
            command = sub
        known = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
        unknown = [w for w in words if w.startswith("--") and w not in known]
        assert not unknown, f"{' '.join(words)}: unknown options {unknown}"


def test_readme_points_at_the_deployment_files() -> None:
    for path in (
        "docker-compose.yml",
        "docker-compose.secure.yml",
        "docker-compose.cluster.yml",
        "docs/deployment.md",
    ):
        assert path in README, path
        assert (ROOT / path).exists(), path
    assert os.access(ROOT / "docs" / "gen_settings_table.py", os.R_OK)

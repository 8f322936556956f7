"""The checks the README's one test command runs, so nothing lets them slip: ruff (lint and
format) over the repository, mypy (strict, as configured) over the packages, and the import
layers the design rests on (DESIGN.md: a pure core behind ports, transports kept thin)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import ROOT

LAYERS: dict[str, frozenset[str]] = {
    "stream_features": frozenset({"predictor", "producers", "bench", "tests"}),
    "producers": frozenset({"predictor", "bench", "tests"}),
    "predictor": frozenset({"producers", "bench", "tests"}),
    "bench": frozenset({"tests"}),
}
"""Package → the top-level packages it must not import: the feature layer stands alone, the
producers build on it only, the serving side never reaches into the producers, and the benches
stand on their own (what they share with the tests is in ``bench.loads``, which tests import)."""

SOURCES = (*LAYERS, "tests", "docs")
"""Every folder of Python source in the repository (and ``setup.py``): ``type: ignore`` checks."""

COMPOSITION = {"predictor/cli.py": frozenset({"producers"})}
"""The one console command, ``eta``, mounts every package's commands: its root may."""

IO_CLIENTS = frozenset({"confluent_kafka", "redis", "fastapi", "httpx", "aiokafka", "faust"})
CORE = (
    "stream_features/contract.py",
    "stream_features/definitions.py",
    "stream_features/layout.py",
    "stream_features/replay_state.py",
    "stream_features/wire_decode.py",
    "stream_features/quality.py",
    "predictor/serving/pipeline.py",
    "predictor/serving/encoding.py",
    "predictor/serving/commits.py",
    "predictor/serving/broker_watch.py",
    "predictor/engines/alignment.py",
)
"""decode → features → predict → encode, and the engine's pure parts: no I/O client."""


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    "check", [("ruff", "check", "."), ("ruff", "format", "--check", ".")], ids=["lint", "format"]
)
def test_ruff_finds_nothing(check: tuple[str, ...]) -> None:
    proc = _run(*check)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]


def test_mypy_strict_finds_nothing() -> None:
    proc = _run("mypy")  # the packages and options of [tool.mypy] in pyproject.toml
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]


def _imports(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports (absolute imports; lazy ones too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_a_package_imports_only_the_layers_below_it(package: str) -> None:
    crossing = {
        name: sorted(_imports(path) & LAYERS[package] - COMPOSITION.get(name, frozenset()))
        for path in sorted((ROOT / package).rglob("*.py"))
        if (name := str(path.relative_to(ROOT)))
    }
    assert not {k: v for k, v in crossing.items() if v}


def test_the_core_imports_no_io_client() -> None:
    found = {name: sorted(_imports(ROOT / name) & IO_CLIENTS) for name in CORE}
    assert not {k: v for k, v in found.items() if v}


def test_every_type_ignore_in_the_repository_says_why() -> None:
    """A ``type: ignore`` silences the checker: the line says what it would have got wrong."""
    bare = re.compile(r"type: ignore(\[[^\]]*\])?\s*$")
    paths = [ROOT / "setup.py", *(p for d in SOURCES for p in sorted((ROOT / d).rglob("*.py")))]
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in paths
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if bare.search(line)
    ]
    assert not found

"""``eta --version`` prints the installed package's version and exits 0, before any command."""

from __future__ import annotations

from importlib.metadata import version

from typer.testing import CliRunner

from predictor.cli import app


def test_version_prints_the_package_version_and_exits_0() -> None:
    result = CliRunner().invoke(app, ["--version"])

    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"etastream {version('etastream')}"


def test_version_wins_over_a_command() -> None:
    result = CliRunner().invoke(app, ["--version", "serve"])

    assert result.exit_code == 0, result.output
    assert result.output.startswith("etastream ")

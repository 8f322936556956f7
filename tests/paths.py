"""Where the repository is, for the tests that read its files (docs, compose files, sources):
one place, so a test's depth in ``tests/`` never decides it."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
"""The repository's top folder (the one with ``pyproject.toml``)."""

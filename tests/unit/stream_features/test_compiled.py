"""The streaming rules run compiled where ``pip install -e .`` built them, never stale."""

from __future__ import annotations

import importlib.machinery
import warnings
from pathlib import Path

import stream_features.replay_state as replay_state
from stream_features.compiled import COMPILED, FreshOnly, StaleExtensionWarning, is_compiled


def _built() -> list[Path]:
    folder = Path(replay_state.__file__).parent
    return sorted(folder.glob("replay_state*" + importlib.machinery.EXTENSION_SUFFIXES[0]))


def test_a_built_engine_is_the_one_loaded() -> None:
    """Where an extension was built from today's source, it is what runs."""
    assert (
        is_compiled() == bool(_built())
        or not _built()[0].with_suffix(_built()[0].suffix + ".sha256").exists()
    )


def test_a_stale_extension_yields_to_its_source(tmp_path: Path) -> None:
    """An extension whose recorded digest is not its source's is passed over, with a warning."""
    built = _built()
    if not built:
        return  # nothing compiled here: the source is all that can run
    fake = tmp_path / "stream_features"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "replay_state.py").write_text("RULES = 'source'\n")
    (fake / built[0].name).write_bytes(built[0].read_bytes())
    (fake / (built[0].name + ".sha256")).write_text("0" * 64 + "\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        spec = FreshOnly().find_spec(COMPILED[0], [str(fake)])
    assert spec is not None and spec.origin == str(fake / "replay_state.py")
    assert any(issubclass(w.category, StaleExtensionWarning) for w in caught)

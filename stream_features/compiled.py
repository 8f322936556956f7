"""Which modules run compiled, and the rule that a stale compiled module is never loaded.

``setup.py`` compiles the streaming rules (``replay_state``, in Cython's pure-Python mode)
and records beside each extension the digest of the source it came from. Importing
``stream_features`` installs ``FreshOnly``, which loads such a module's extension only while
its ``.py`` still has that digest, and the ``.py`` otherwise (after an edit, until the next
``pip install -e .``), with a warning: the same rules either way, never an old copy of them.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

__all__ = ["COMPILED", "FreshOnly", "StaleExtensionWarning", "install", "is_compiled"]

COMPILED = ("stream_features.replay_state",)
"""The modules ``setup.py`` compiles (its ``COMPILED`` names the same)."""


class StaleExtensionWarning(UserWarning):
    """A compiled module was built from another version of its source: the source runs."""


class FreshOnly(importlib.abc.MetaPathFinder):
    """Finds the modules of ``COMPILED``: their extension when built from the source as it
    is now, else the source itself."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        if fullname not in COMPILED:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or not isinstance(spec.loader, importlib.machinery.ExtensionFileLoader):
            return spec
        assert spec.origin is not None  # an extension is a file
        built = Path(spec.origin)
        source = built.parent / (fullname.rsplit(".", 1)[1] + ".py")
        if not source.exists():  # installed without its source: the extension is all there is
            return spec
        if _recorded(built) == hashlib.sha256(source.read_bytes()).hexdigest():
            return spec
        warnings.warn(
            f"{built.name} was built from another version of {source.name}: running the "
            "source (slower); `pip install -e .` compiles it again",
            StaleExtensionWarning,
            stacklevel=2,
        )
        return importlib.util.spec_from_file_location(fullname, source)


def _recorded(built: Path) -> str | None:
    try:
        return Path(f"{built}.sha256").read_text().strip()
    except OSError:
        return None


def install() -> None:
    """Put ``FreshOnly`` first on the import path (once)."""
    if not any(isinstance(finder, FreshOnly) for finder in sys.meta_path):
        sys.meta_path.insert(0, FreshOnly())


def is_compiled(name: str = "stream_features.replay_state") -> bool:
    """Whether module ``name`` runs as its C extension in this process.

    >>> isinstance(is_compiled(), bool)
    True
    """
    module = importlib.import_module(name)
    return isinstance(getattr(module, "__loader__", None), importlib.machinery.ExtensionFileLoader)

"""Build step of etastream: compile the streaming rules (``stream_features/replay_state.py``,
written in Cython's pure-Python mode) into a C extension.

``pip install -e .`` and ``pip install .`` run it. The source stays plain Python that runs
unchanged where no compiler is found (the extension is optional), and beside each compiled
module a ``.sha256`` file records the source it was built from: ``stream_features.compiled``
loads the extension only while that source is unchanged, so an edit never runs stale code.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

COMPILED = ["stream_features.replay_state"]
"""The modules compiled; ``stream_features.compiled.COMPILED`` names the same."""


class BuildAndRecord(build_ext):
    """``build_ext`` that writes the source's digest beside each extension it builds."""

    def build_extension(self, ext: Extension) -> None:
        super().build_extension(ext)
        built = Path(self.get_ext_fullpath(ext.name))
        if built.exists():
            source = Path(ext.name.replace(".", "/") + ".py")  # sources[0] is the C now
            digest = hashlib.sha256(source.read_bytes()).hexdigest()
            Path(f"{built}.sha256").write_text(digest + "\n")

    def copy_extensions_to_source(self) -> None:
        """An editable install copies each extension into the tree: its record goes along."""
        super().copy_extensions_to_source()
        build_py = self.get_finalized_command("build_py")
        for ext in self.extensions:
            inplace, built = self._get_inplace_equivalent(build_py, ext)
            if Path(f"{built}.sha256").exists():
                self.copy_file(f"{built}.sha256", f"{inplace}.sha256", level=self.verbose)


def _extensions() -> list[Extension]:
    try:
        from Cython.Build import cythonize
    except ImportError:  # no Cython: the modules run as Python
        return []
    modules = [
        Extension(name, [name.replace(".", "/") + ".py"], optional=True) for name in COMPILED
    ]
    return cythonize(  # type: ignore[no-any-return]  # Cython's own annotation is loose
        modules,
        language_level=3,
        compiler_directives={"binding": False, "embedsignature": True},
        quiet=True,
    )


setup(ext_modules=_extensions(), cmdclass={"build_ext": BuildAndRecord})

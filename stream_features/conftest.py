"""Doctest collection of the package: a module that runs compiled (``stream_features.compiled``)
is imported from its extension, which pytest's ``--doctest-modules`` cannot match to its
``.py``; its rules are tested by tests/unit/stream_features/test_replay_state.py and the parity
tests."""

from __future__ import annotations

from stream_features.compiled import COMPILED, is_compiled

collect_ignore = [
    name.split(".", 1)[1].replace(".", "/") + ".py" for name in COMPILED if is_compiled(name)
]

"""Coverage-guided fuzzing of every topic's decoder with atheris (libFuzzer for Python).

Each input goes through ``oracle.check``: ``contract.decode``, the worker's ``decode_batch`` on
each source topic, and ``eta tail``'s ``describe``. A failed invariant or any exception other
than a rejection is a crash; libFuzzer then writes the input to ``crash-<sha1>`` under
``-artifact_prefix``. Run it from the repository root, new inputs going to the first directory:

    python tests/fuzz/fuzz_decode.py -max_total_time=600 -max_len=8192 \\
        /tmp/found tests/fuzz/corpus/*

and fold what it found into the kept corpus (smallest inputs covering the same code):

    python tests/fuzz/fuzz_decode.py -merge=1 tests/fuzz/corpus/orders /tmp/found

CI runs it for about 15 s (``test_fuzz_run.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["INSTRUMENTED", "main"]

INSTRUMENTED = ["stream_features", "predictor.serving", "producers", "tests.fuzz"]
"""Packages whose Python code feeds coverage back to the fuzzer (orjson and pydantic-core are
native code, so only their outcomes, not their branches, guide it)."""


def main(argv: list[str]) -> None:
    root = str(Path(__file__).resolve().parents[2])
    if root not in sys.path:
        sys.path.insert(0, root)
    import atheris

    with atheris.instrument_imports(include=INSTRUMENTED):
        from tests.fuzz.oracle import check

    atheris.Setup(argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)

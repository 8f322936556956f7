"""Fast scoring: the model's trees compiled to machine code by lleaves, checked against LightGBM.

The compiled library is cached in the artifact's ``compiled/`` directory under a key made of
the model's SHA-256, the lleaves and llvmlite versions and the host CPU, so a cache built for
another model, compiler or machine is never picked up. Before use, the compiled scorer must
agree with LightGBM's own predict on a sample (max abs diff <= 1e-6 s); otherwise it is
refused and LightGBM's predict, always kept, scores instead.

A version is compiled once however many processes want it: the first takes an exclusive
``flock`` on ``<cache>.lock`` and compiles; the others wait on that lock, then load its
library (or compile it themselves if it failed or died, which releases the lock). Services
compile in the model handle's background thread, so LightGBM scores while they wait;
``eta models compile`` waits in the foreground. Compiling logs a line when it starts and one
with the seconds taken when it ends.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from predictor.errors import CompiledScoringError
from predictor.models.artifact import EtaModel, atomic_write

__all__ = [
    "PARITY_TOLERANCE_S",
    "Scoring",
    "compile_model",
    "lleaves_version",
    "parity_sample",
    "with_scoring",
]

log = logging.getLogger(__name__)
Array = npt.NDArray[np.float64]
Scoring = Literal["auto", "lightgbm", "compiled"]
PARITY_TOLERANCE_S = 1e-6
_SINGLE_THREAD_ROWS = 20_000
"""Below this many rows one thread is faster than lleaves' per-call thread pool."""


def lleaves_version() -> str | None:
    try:
        return version("lleaves")
    except PackageNotFoundError:
        return None


def _cache_key(model: EtaModel) -> str:
    import llvmlite.binding as llvm  # type: ignore[import-untyped]

    cpu = f"{llvm.get_host_cpu_name()}|{llvm.get_host_cpu_features().flatten()}"
    parts = [model.model_sha256, lleaves_version() or "", version("llvmlite"), cpu]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


def _compile_cache(model: EtaModel) -> Path:
    """Where the model's compiled library is cached (its lock is ``<that>.lock``)."""
    return model.path / "compiled" / f"lleaves-{_cache_key(model)}.bin"


def parity_sample(model: EtaModel, rows: int = 2000, seed: int = 0) -> Array:
    """Rows drawn from the model's own reference distributions, with missing values mixed in.

    Values fall in every reference bin (and past the training range), codes include unseen
    ones, and at least 5% of each column is NaN, so the sample takes most branches of the trees.
    """
    rng = np.random.default_rng(seed)
    refs: dict[str, Any] = model.metadata.get("reference", {}).get("features", {})
    out = np.empty((rows, len(model.feature_names)), dtype=np.float64)
    for j, name in enumerate(model.feature_names):
        ref = refs.get(name)
        if ref is None or (ref.get("min") is None and ref.get("kind") != "categorical"):
            out[:, j] = rng.normal(0, 1000, rows)
        elif ref["kind"] == "categorical":
            codes = np.asarray([*ref["edges"], 1023.0, 0.0], dtype=np.float64)
            out[:, j] = rng.choice(codes, rows)
        else:
            lo, hi = float(ref["min"]), float(ref["max"])
            bounds = np.asarray([lo - 0.1 * (hi - lo + 1), *ref["edges"], hi + 0.1 * (hi - lo + 1)])
            pick = rng.integers(0, bounds.size - 1, rows)
            out[:, j] = rng.uniform(bounds[pick], bounds[pick + 1])
        out[rng.random(rows) < max(0.05, float(ref["missing_share"]) if ref else 0.05), j] = np.nan
    return out


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cache_intact(cache: Path) -> bool:
    """The library is there and matches the SHA-256 written beside it.

    LLVM aborts the whole process on an unreadable object file, so a truncated or damaged cache
    must be caught before lleaves sees it; it is then rebuilt.
    """
    sidecar = cache.with_suffix(".sha256")
    return cache.is_file() and sidecar.is_file() and sidecar.read_text() == _digest(cache)


@contextmanager
def _compile_lock(
    cache: Path, ref: str, on_wait: Callable[[], None] | None = None
) -> Iterator[float]:
    """Hold the exclusive lock of ``cache`` (``<cache>.lock``); yields the seconds spent
    waiting for another process that held it.

    The lock is an ``flock`` on an open file, so it goes with the process that holds it, even
    when that process is killed: a waiter never waits on a dead compile.
    """
    with cache.with_name(f"{cache.name}.lock").open("ab") as handle:
        started = time.monotonic()
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info(
                "%s is being compiled by another process; waiting for its library (lock %s)",
                ref,
                handle.name,
            )
            if on_wait is not None:
                on_wait()
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield time.monotonic() - started
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _compile(model: EtaModel, cache: Path | None, cache_hit: bool) -> Any:
    import lleaves

    compiled = lleaves.Model(model_file=str(model.path / "model.txt"))
    if cache is None or cache_hit:
        compiled.compile(cache=str(cache) if cache else None)
        return compiled
    # Compile to a private file, then publish it whole (library first, then its digest).
    tmp = cache.with_name(f"{cache.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        compiled.compile(cache=str(tmp))
        digest = _digest(tmp)
        os.replace(tmp, cache)
        atomic_write(cache.with_suffix(".sha256"), digest.encode())
    finally:
        tmp.unlink(missing_ok=True)
    return compiled


def compile_model(
    model: EtaModel,
    sample: Array | None = None,
    tolerance_s: float = PARITY_TOLERANCE_S,
    use_cache: bool = True,
    on_wait: Callable[[], None] | None = None,
) -> EtaModel:
    """The model scored by lleaves, after checking it agrees with LightGBM on ``sample``.

    With a cache, one process at a time compiles a version; another one asking for it
    meanwhile waits for that library (see the module's docstring), calling ``on_wait`` first.
    """
    if lleaves_version() is None:
        raise CompiledScoringError("lleaves is not installed")
    started = time.perf_counter()
    ref = f"{model.name}:{model.version}"
    cache = _compile_cache(model) if use_cache and os.access(model.path, os.W_OK) else None
    if cache is not None:
        cache.parent.mkdir(exist_ok=True)
    waited_s = 0.0
    try:
        if cache is not None and _cache_intact(cache):
            cache_hit, compiled = True, _compile(model, cache, True)
        elif cache is None:
            cache_hit, compiled = False, _compiled_logged(model, None, ref)
        else:
            with _compile_lock(cache, ref, on_wait) as waited_s:
                cache_hit = _cache_intact(cache)  # built by the process we waited for
                if cache_hit:
                    compiled = _compile(model, cache, True)
                else:
                    compiled = _compiled_logged(model, cache, ref)
    except Exception as exc:  # lleaves/llvmlite raise many kinds; all mean "not compiled"
        raise CompiledScoringError(f"lleaves could not compile {model.path} ({exc})") from exc

    def raw_predict(values: Array) -> Array:
        n_jobs = 1 if values.shape[0] < _SINGLE_THREAD_ROWS else (os.cpu_count() or 1)
        result: Array = compiled.predict(values, n_jobs=n_jobs)
        return result

    candidate = model.with_backend(raw_predict, "compiled", {})
    rows = sample if sample is not None else parity_sample(model)
    diff = float(np.max(np.abs(candidate.predict(rows) - model.predict_lightgbm(rows))))
    if not diff <= tolerance_s:  # also catches NaN
        raise CompiledScoringError(
            f"compiled and LightGBM predictions differ by up to {diff:.3g} s on "
            f"{rows.shape[0]} rows (tolerance {tolerance_s:g} s)"
        )
    info = {
        "lleaves": lleaves_version(),
        "parity_max_abs_diff_s": diff,
        "parity_rows": int(rows.shape[0]),
        "compile_s": round(time.perf_counter() - started, 3),
        "waited_s": round(waited_s, 3),
        "cache": str(cache) if cache else None,
        "cache_hit": cache_hit,
    }
    log.info("%s compiled: %s", ref, info)
    return model.with_backend(raw_predict, "compiled", info)


def _compiled_logged(model: EtaModel, cache: Path | None, ref: str) -> Any:
    """``_compile`` on a cold cache, with a line at the start and one with the seconds taken
    (tens of seconds to minutes for a large model, during which nothing else is said)."""
    log.info("compiling %s with lleaves (its trees to machine code)…", ref)
    started = time.perf_counter()
    compiled = _compile(model, cache, False)
    log.info("%s compiled in %.1f s", ref, time.perf_counter() - started)
    return compiled


def with_scoring(model: EtaModel, scoring: Scoring, sample: Array | None = None) -> EtaModel:
    """The model scored the way ``scoring`` asks: ``auto`` falls back to LightGBM, quietly
    when lleaves is not installed and with a warning when compiling or parity fails."""
    if scoring == "lightgbm":
        return model
    if scoring == "compiled":
        return compile_model(model, sample)
    if lleaves_version() is None:
        log.info("lleaves is not installed: %s:%s scored by LightGBM", model.name, model.version)
        return model
    try:
        return compile_model(model, sample)
    except CompiledScoringError as exc:
        log.warning("%s; %s:%s scored by LightGBM", exc, model.name, model.version)
        return model

"""Fast scoring: the model's trees compiled to machine code by lleaves, checked against LightGBM.

The compiled library is cached in the artifact's ``compiled/`` directory under a key made of
the model's SHA-256, the lleaves and llvmlite versions and the host CPU, so a cache built for
another model, compiler or machine is never picked up. Before use, the compiled scorer must
agree with LightGBM's own predict on a sample (max abs diff <= 1e-6 s); otherwise it is
refused and LightGBM's predict, always kept, scores instead. An artifact with an ETA range has
three models (the point and both bounds): each is compiled and cached under its own SHA-256 and
checked the same way, under one lock, and either all three score compiled or none does.

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
from predictor.models.artifact import MODEL_FILE, RANGE_FILES, EtaModel, atomic_write

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


def _cache_key(model: EtaModel, file: str = MODEL_FILE) -> str:
    import llvmlite.binding as llvm  # type: ignore[import-untyped]  # llvmlite ships no types

    cpu = f"{llvm.get_host_cpu_name()}|{llvm.get_host_cpu_features().flatten()}"
    parts = [model.file_sha256[file], lleaves_version() or "", version("llvmlite"), cpu]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


def _compile_cache(model: EtaModel, file: str = MODEL_FILE) -> Path:
    """Where a model file's compiled library is cached; the point model's ``<that>.lock`` is
    the lock of all the artifact's compiles."""
    return model.path / "compiled" / f"lleaves-{_cache_key(model, file)}.bin"


def _files(model: EtaModel) -> list[str]:
    """The model files scoring runs: the point model, and both bounds when there is a range."""
    return [MODEL_FILE, *(RANGE_FILES if model.has_range else ())]


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


def _compile(model: EtaModel, file: str, cache: Path | None, cache_hit: bool) -> Any:
    import lleaves

    compiled = lleaves.Model(model_file=str(model.path / file))
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
    use = use_cache and os.access(model.path, os.W_OK)
    files = _files(model)
    caches = {f: _compile_cache(model, f) for f in files} if use else None
    if caches is not None:
        caches[MODEL_FILE].parent.mkdir(exist_ok=True)
    waited_s = 0.0
    try:
        if caches is not None and all(_cache_intact(c) for c in caches.values()):
            cache_hit, built = True, {f: _compile(model, f, caches[f], True) for f in files}
        elif caches is None:
            cache_hit, built = False, _compiled_logged(model, None, ref)
        else:
            with _compile_lock(caches[MODEL_FILE], ref, on_wait) as waited_s:
                # built by the process we waited for?
                cache_hit = all(_cache_intact(c) for c in caches.values())
                if cache_hit:
                    built = {f: _compile(model, f, caches[f], True) for f in files}
                else:
                    built = _compiled_logged(model, caches, ref)
    except Exception as exc:  # lleaves/llvmlite raise many kinds; all mean "not compiled"
        raise CompiledScoringError(f"lleaves could not compile {model.path} ({exc})") from exc

    def scorer(compiled: Any) -> Callable[[Array], Array]:
        def raw_predict(values: Array) -> Array:
            n_jobs = 1 if values.shape[0] < _SINGLE_THREAD_ROWS else (os.cpu_count() or 1)
            result: Array = compiled.predict(values, n_jobs=n_jobs)
            return result

        return raw_predict

    raw_predict = scorer(built[MODEL_FILE])
    raw_bounds = (
        (scorer(built[RANGE_FILES[0]]), scorer(built[RANGE_FILES[1]]))
        if (model.bounds is not None)
        else None
    )
    candidate = model.with_backend(raw_predict, "compiled", {})
    rows = sample if sample is not None else parity_sample(model)
    diffs = [np.max(np.abs(candidate.predict(rows) - model.predict_lightgbm(rows)))]
    if raw_bounds is not None and model.bounds is not None:
        for compiled_bound, booster in zip(raw_bounds, model.bounds, strict=True):
            diffs.append(np.max(np.abs(compiled_bound(rows) - booster.predict(rows))))
    diff = float(np.max(diffs))  # a NaN anywhere stays NaN
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
        "cache": str(caches[MODEL_FILE]) if caches else None,
        "cache_hit": cache_hit,
        "models": len(files),
    }
    log.info("%s compiled: %s", ref, info)
    return model.with_backend(raw_predict, "compiled", info, raw_bounds)


def _compiled_logged(model: EtaModel, caches: dict[str, Path] | None, ref: str) -> dict[str, Any]:
    """``_compile`` of every model file on a cold cache, with a line at the start and one with
    the seconds taken (tens of seconds to minutes for a large model, nothing said meanwhile)."""
    files = _files(model)
    log.info("compiling %s with lleaves (the trees of %d models to machine code)…", ref, len(files))
    started = time.perf_counter()
    built = {f: _compile(model, f, caches[f] if caches else None, False) for f in files}
    log.info("%s compiled in %.1f s", ref, time.perf_counter() - started)
    return built


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

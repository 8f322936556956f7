"""Compiled scoring: same answers as LightGBM, a cache that never serves another model."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from predictor.errors import CompiledScoringError
from predictor.models import compiled
from predictor.models.artifact import EtaModel, load_artifact
from predictor.models.compiled import compile_model, parity_sample, with_scoring
from tests.polling import wait_until
from tests.unit._training_data import rows, write_small_artifact

pytest.importorskip("lleaves", reason="compiled scoring needs pip install etastream[compiled]")


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("artifacts")
    return (
        write_small_artifact(root / "a").artifact_dir,
        write_small_artifact(root / "b", seed=1, shift_s=900).artifact_dir,
    )


@pytest.fixture()
def fresh(artifacts: tuple[Path, Path], tmp_path: Path) -> Path:
    """A copy with no compiled cache yet."""
    return Path(shutil.copytree(artifacts[0], tmp_path / "a"))


@pytest.fixture(scope="module")
def shared(artifacts: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy whose cache the tests share: one compile for all that do not test the cache."""
    return Path(shutil.copytree(artifacts[0], tmp_path_factory.mktemp("shared") / "a"))


def test_compiled_predictions_match_lightgbm(shared: Path) -> None:
    model = compile_model(load_artifact(shared))
    x = rows(300)
    x[::7, 3] = np.nan

    assert model.backend == "compiled"
    assert model.scoring_info["parity_max_abs_diff_s"] <= 1e-6
    np.testing.assert_allclose(model.predict(x), model.predict_lightgbm(x), rtol=0, atol=1e-6)
    assert model.predict(x[:1]).shape == (1,)


def test_the_range_is_compiled_too_and_matches_lightgbm(shared: Path) -> None:
    reference = load_artifact(shared)
    model = compile_model(reference)
    x = rows(300)
    x[::5, 2] = np.nan

    point, bounds = model.predict_range(x)
    ref_point, ref_bounds = reference.predict_range(x)

    assert model.scoring_info["models"] == 3
    assert bounds is not None and ref_bounds is not None
    np.testing.assert_allclose(point, ref_point, rtol=0, atol=1e-6)
    np.testing.assert_allclose(bounds, ref_bounds, rtol=0, atol=1e-6)
    assert model._raw_bounds is not None and model._raw_bounds[0].__name__ == "raw_predict"


def test_compiled_library_is_cached_in_the_artifact_and_reused(fresh: Path) -> None:
    first = compile_model(load_artifact(fresh))
    second = compile_model(load_artifact(fresh))

    assert not first.scoring_info["cache_hit"]
    assert second.scoring_info["cache_hit"]
    assert Path(second.scoring_info["cache"]).parent == fresh / "compiled"
    load_artifact(fresh)  # the cache is not part of the checksummed files


def test_a_cache_built_for_another_model_is_never_used(
    artifacts: tuple[Path, Path], tmp_path: Path
) -> None:
    a = Path(shutil.copytree(artifacts[0], tmp_path / "a"))
    b = Path(shutil.copytree(artifacts[1], tmp_path / "b"))
    compile_model(load_artifact(a))
    shutil.copytree(a / "compiled", b / "compiled")

    model = compile_model(load_artifact(b))

    assert not model.scoring_info["cache_hit"]
    x = rows(50)
    np.testing.assert_allclose(model.predict(x), model.predict_lightgbm(x), atol=1e-6)
    assert len(list((b / "compiled").glob("*.bin"))) == 2 * 3  # point and both bounds, each


def test_a_damaged_cache_is_rebuilt_not_loaded(fresh: Path) -> None:
    first = compile_model(load_artifact(fresh))
    library = Path(first.scoring_info["cache"])
    library.write_bytes(library.read_bytes()[:100])  # LLVM would abort the process on this

    again = compile_model(load_artifact(fresh))

    assert not again.scoring_info["cache_hit"]
    x = rows(50)
    np.testing.assert_allclose(again.predict(x), again.predict_lightgbm(x), atol=1e-6)
    assert compile_model(load_artifact(fresh)).scoring_info["cache_hit"]


def test_parity_failure_refuses_the_compiled_path(shared: Path) -> None:
    with pytest.raises(CompiledScoringError, match="differ by up to"):
        compile_model(load_artifact(shared), tolerance_s=-1.0)


def test_parity_sample_has_every_feature_and_missing_values(shared: Path) -> None:
    model = load_artifact(shared)
    sample = parity_sample(model, rows=500)

    assert sample.shape == (500, len(model.feature_names))
    assert np.isnan(sample).mean(axis=0).min() > 0


def test_scoring_setting_picks_the_engine(shared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = load_artifact(shared)

    assert with_scoring(model, "lightgbm") is model
    assert with_scoring(model, "auto").backend == "compiled"
    assert with_scoring(model, "compiled").backend == "compiled"

    monkeypatch.setattr(compiled, "lleaves_version", lambda: None)
    assert with_scoring(model, "auto").backend == "lightgbm"
    with pytest.raises(CompiledScoringError, match="lleaves is not installed"):
        with_scoring(model, "compiled")


_COMPILE_WHEN_TOLD = """
import json, sys, time
from pathlib import Path
from predictor.models.artifact import EtaModel, load_artifact
from predictor.models.compiled import compile_model
model = load_artifact(Path(sys.argv[1]))
Path(sys.argv[2]).touch()
deadline = time.monotonic() + 60
while not Path(sys.argv[3]).exists():
    assert time.monotonic() < deadline, "never told to start"
    time.sleep(0.005)
print(json.dumps(compile_model(model).scoring_info))
"""


def test_two_processes_compiling_one_version_compile_it_once(fresh: Path, tmp_path: Path) -> None:
    """Both start at the same moment on a cold cache: one compiles, the other waits on the
    lock and loads the library it cached (issue #22: each compiled its own)."""
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _COMPILE_WHEN_TOLD,
                str(fresh),
                str(tmp_path / f"ready{i}"),
                str(tmp_path / "go"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    try:
        wait_until(lambda: all((tmp_path / f"ready{i}").exists() for i in range(2)), 60, "start")
        (tmp_path / "go").touch()
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert all(p.returncode == 0 for p in procs), outs
    infos = sorted((json.loads(out) for out, _err in outs), key=lambda i: i["cache_hit"])

    compiler, waiter = infos
    assert not compiler["cache_hit"] and waiter["cache_hit"], infos  # one compile
    assert waiter["waited_s"] > 0.1, infos  # it waited for the other's library
    assert compiler["cache"] == waiter["cache"]
    assert Path(waiter["cache"]).name in [p.name for p in (fresh / "compiled").glob("*.bin")]
    assert len(list((fresh / "compiled").glob("*.bin"))) == 3  # point and both bounds, once
    assert not list((fresh / "compiled").glob("*.tmp"))


def test_a_compile_waiting_on_a_killed_holder_compiles_itself(
    fresh: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The lock goes with its process: a holder killed mid-compile never leaves a waiter
    stuck; the waiter finds no library and builds it."""
    caplog.set_level(logging.INFO, "predictor.models.compiled")
    model = load_artifact(fresh)
    cache = compiled._compile_cache(model)
    cache.parent.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(cache.with_name(f"{cache.name}.lock"))],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        result: list[EtaModel] = []
        worker = threading.Thread(target=lambda: result.append(compile_model(model)))
        worker.start()
        wait_until(lambda: "being compiled by another process" in caplog.text, 60, "wait")
        assert worker.is_alive() and not result
        holder.kill()
        worker.join(120)
    finally:
        holder.kill()
        holder.communicate(timeout=10)  # reaps it and closes its pipe
    [done] = result
    assert not done.scoring_info["cache_hit"] and done.scoring_info["waited_s"] > 0
    assert "compiling eta" in caplog.text and re.search(r"compiled in \d+\.\d s", caplog.text)


_HOLD_LOCK = """
import fcntl, sys, time
handle = open(sys.argv[1], "ab")
fcntl.flock(handle, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(600)
"""


def test_eta_models_compile_prints_a_table(
    artifacts: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from predictor.cli import app
    from predictor.models.registry import Registry

    registry = Registry(tmp_path / "models")
    version = registry.register(artifacts[0])
    for key in ("ETA_REDIS_URL", "ETA_KAFKA_BOOTSTRAP_SERVERS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("ETA_REGISTRY_DIR", str(registry.root))
    monkeypatch.setenv("COLUMNS", "160")

    first = CliRunner().invoke(app, ["models", "compile", f"eta:{version}"])
    again = CliRunner().invoke(app, ["models", "compile", "eta"])

    assert first.exit_code == 0 and again.exit_code == 0, first.output + again.output
    assert f"eta:{version} compiled" in first.output
    assert "compiled now" in first.output and "loaded from the cache" in again.output
    assert "parity with LightGBM" in first.output and "rows (tolerance 1e-06 s)" in first.output
    assert "{" not in first.output  # no raw dict any more

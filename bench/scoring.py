"""Scoring latency and throughput: LightGBM's predict next to the lleaves-compiled model.

Both engines score through ``EtaModel.predict`` (input check, transform, clip included), on the
same rows, in one run: single rows (the online path) and batches of 1000 (the stream path).

    python -m bench.scoring                      # trains a model on generated data first
    python -m bench.scoring --artifact models/eta/3

Prints a table and writes ``bench/results/scoring.json``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
from rich.console import Console
from rich.table import Table

from predictor.models.artifact import EtaModel, load_artifact
from predictor.models.compiled import compile_model, lleaves_version
from predictor.models.dataset import split_by_time
from predictor.models.synthetic import synthetic_training_set
from predictor.models.training import TrainConfig
from predictor.models.workflow import train_to_artifact
from stream_features.definitions import feature_names

Array = npt.NDArray[np.float64]
RESULTS = Path(__file__).parent / "results" / "scoring.json"


def _timings(call: Callable[[Array], Any], batches: list[Array], repeat: int) -> list[float]:
    for batch in batches[:20]:  # warm up caches and lazily built state
        call(batch)
    out = []
    for i in range(repeat):
        batch = batches[i % len(batches)]
        started = time.perf_counter_ns()
        call(batch)
        out.append((time.perf_counter_ns() - started) / 1e3)
    return out


def _summary(micros: list[float], rows_per_call: int) -> dict[str, float]:
    ordered = sorted(micros)
    return {
        "calls": len(micros),
        "p50_us": ordered[len(ordered) // 2],
        "p99_us": ordered[int(len(ordered) * 0.99) - 1],
        "mean_us": statistics.fmean(micros),
        "rows_per_s": rows_per_call * len(micros) / (sum(micros) / 1e6),
    }


def _model(args: argparse.Namespace, workdir: Path) -> EtaModel:
    if args.artifact:
        return load_artifact(Path(args.artifact))
    split = split_by_time(
        synthetic_training_set(args.train_rows, seed=0), feature_names(), valid_fraction=0.2
    )
    out = workdir / "artifact"
    outcome = train_to_artifact(
        split,
        out,
        name="bench",
        training_set="generated",
        config=TrainConfig(num_boost_round=args.max_rounds),
    )
    print(f"trained on {args.train_rows} generated rows: {outcome.result.best_iteration} trees")
    return load_artifact(out)


def main() -> None:
    args = _parser().parse_args()
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        model = _model(args, Path(tmp))
        results, compile_info = _measure(args, model, console)
    _print_tables(console, model, results, compile_info)
    report = _report(model, results, compile_info)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    console.print(f"written to {args.out}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", help="an artifact directory (default: train one)")
    parser.add_argument("--train-rows", type=int, default=100_000)
    parser.add_argument("--max-rounds", type=int, default=2000)
    parser.add_argument("--single-calls", type=int, default=5000)
    parser.add_argument("--batch-calls", type=int, default=300)
    parser.add_argument("--batch-rows", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser


def _measure(
    args: argparse.Namespace, model: EtaModel, console: Console
) -> tuple[dict[str, dict[str, dict[str, float]]], dict[str, Any]]:
    """Single rows and batches through LightGBM and, where lleaves is installed, the compiled
    scorer (compiled cold, checked against LightGBM). Returns the timings and the compile's
    figures."""
    engines: dict[str, EtaModel] = {"lightgbm": model}
    compile_info: dict[str, Any] = {}
    if lleaves_version() is not None:
        started = time.perf_counter()
        engines["compiled"] = compile_model(model, use_cache=False)
        compile_info = {**engines["compiled"].scoring_info}
        compile_info["cold_compile_s"] = round(time.perf_counter() - started, 2)
    else:
        console.print("[yellow]lleaves not installed: LightGBM only[/]")

    pool = split_by_time(
        synthetic_training_set(20_000, seed=7), feature_names(), valid_fraction=0.5
    ).x_valid
    singles = [pool[i : i + 1] for i in range(2000)]
    n = args.batch_rows
    batches = [pool[i : i + n] for i in range(0, pool.shape[0] - n + 1, n // 2)]
    results: dict[str, dict[str, dict[str, float]]] = {}
    for engine, scorer in engines.items():
        results[engine] = {
            "single_row": _summary(_timings(scorer.predict, singles, args.single_calls), 1),
            f"batch_{n}": _summary(_timings(scorer.predict, batches, args.batch_calls), n),
        }
    if "compiled" in engines:
        diff = np.abs(engines["compiled"].predict(pool) - model.predict(pool)).max()
        compile_info["max_abs_diff_on_bench_rows_s"] = float(diff)
    return results, compile_info


def _print_tables(
    console: Console,
    model: EtaModel,
    results: dict[str, dict[str, dict[str, float]]],
    compile_info: dict[str, Any],
) -> None:
    table = Table(title=f"scoring {model.metadata.get('num_trees')} trees, {os.cpu_count()} cores")
    for column in ("engine", "case", "p50 µs", "p99 µs", "mean µs", "rows/s"):
        table.add_column(column, justify="right" if column != "engine" else "left")
    for engine, cases in results.items():
        for case, s in cases.items():
            table.add_row(
                engine,
                case,
                f"{s['p50_us']:.1f}",
                f"{s['p99_us']:.1f}",
                f"{s['mean_us']:.1f}",
                f"{s['rows_per_s']:,.0f}",
            )
    console.print(table)
    if compile_info:
        console.print(
            f"compile {compile_info['cold_compile_s']} s cold; parity max |diff| "
            f"{compile_info['parity_max_abs_diff_s']:.2e} s on the parity sample, "
            f"{compile_info['max_abs_diff_on_bench_rows_s']:.2e} s on the bench rows"
        )


def _report(
    model: EtaModel, results: dict[str, dict[str, dict[str, float]]], compile_info: dict[str, Any]
) -> dict[str, Any]:
    """What ``--out`` holds."""
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "lightgbm": version("lightgbm"),
            "lleaves": lleaves_version(),
            "processor": platform.processor() or platform.machine(),
        },
        "model": {
            "num_trees": model.metadata.get("num_trees"),
            "objective": model.metadata.get("objective"),
            "features": len(model.feature_names),
        },
        "compile": compile_info,
        "results": results,
    }


if __name__ == "__main__":
    main()

"""Batch prediction: scoring rows/s, and a whole ``eta predict batch`` run over 100,000 stores.

Set-up: the embedded stack, a production-sized model (``serving_setup``: trained once on
generated data, compiled with lleaves), and the last hour of a marketplace with ``--stores``
stores applied to Redis as the stream applies it (every store has state), with batch features
materialised from the same orders. Store profiles come from those orders, as
``eta predict batch --history`` computes them.

Measured:

1. scoring: ``EtaModel.predict`` over the run's own feature rows (stores × slots), compiled and
   LightGBM, the model's own thread policy (lleaves uses every core from 20,000 rows);
2. the whole run (``run_batch``, what the command runs): synthetic orders, feature reads
   through the online read, scoring, encoding, the Redis hash, Parquet, the pointer swap —
   with the time of each stage (the feature reads overlap the rest, so stages add up to more
   than the wall time);
3. where a run's time goes: cProfile of a smaller run, top functions by own time.

    python -m bench.batch_predict                        # 100,000 stores × 4 slots
    python -m bench.batch_predict --stores 20000 --no-profile

Prints tables and writes ``bench/results/batch_predict.json``.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import platform
import pstats
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import redis
from rich.console import Console
from rich.table import Table

from bench.serving_setup import bench_artifact, register, seed_state
from predictor.batch_scoring import (
    batch_order_id,
    orders_frame,
    profile_order,
    run_batch,
    slot_orders,
    slot_rows,
    store_profiles,
)
from predictor.models.artifact import EtaModel
from stream_features.settings import Settings
from stream_features.stack import start_stack

RESULTS = Path(__file__).parent / "results" / "batch_predict.json"


def _rows(client: redis.Redis, profiles: Any, slots: int, as_of: datetime) -> np.ndarray:
    """The feature rows a run scores, read once (for the scoring measurement)."""
    parts = []
    for start in range(0, profiles.height, 5000):
        templates = [
            profile_order(p, batch_order_id(p["store_id"], 0), as_of)
            for p in profiles.slice(start, 5000).to_dicts()
        ]
        orders = slot_orders(templates, slots)
        for i in range(0, len(orders), 2000 * slots):
            parts.append(slot_rows(client, orders[i : i + 2000 * slots], slots).values)
    return np.concatenate(parts)


def _redis_busy(client: redis.Redis) -> dict[str, float]:
    """Seconds Redis spent in each command since the last CONFIG RESETSTAT (the script calls
    are the feature reads; Redis runs one command at a time, so their sum bounds a run)."""
    stats = client.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): round(value["usec"] / 1e6, 2)
        for name, value in stats.items()
        if value["usec"] > 10_000
    }


def _scoring(model: EtaModel, rows: np.ndarray, repeat: int) -> dict[str, Any]:
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        model.predict(rows)
        seconds.append(time.perf_counter() - started)
    best = min(seconds)
    return {
        "rows": int(rows.shape[0]),
        "backend": model.backend,
        "best_s": round(best, 3),
        "median_s": round(statistics.median(seconds), 3),
        "rows_per_s_best": round(rows.shape[0] / best),
        "rows_per_s_median": round(rows.shape[0] / statistics.median(seconds)),
    }


def _profile(client: redis.Redis, profiles: Any, model: EtaModel, slots: int, out: Path) -> Any:
    profiler = cProfile.Profile()
    profiler.enable()
    run = run_batch(client, profiles, model, as_of=datetime.now(UTC), slots=slots, out_dir=out)
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = sum(row[2] for row in stats.stats.values())  # type: ignore[attr-defined]  # pstats.Stats keeps its table (.stats) out of typeshed
    top = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:15]  # type: ignore[attr-defined]  # as above
    return {
        "stores": run.stores,
        "note": "main thread only (the feature-read thread is not profiled); tottime shares",
        "top_tottime": [
            {
                "function": f"{Path(file).name}:{line}:{name}",
                "tottime_s": round(row[2], 3),
                "share": round(row[2] / total, 3),
            }
            for (file, line, name), row in top
        ],
    }


def main() -> None:
    args = _parser().parse_args()
    console = Console()
    compiled, n_rows, scoring, runs, profile = _measure(args, console)
    _print_tables(console, args, n_rows, scoring, runs, profile)
    report = _report(args, compiled, scoring, runs, profile)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(
        orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
    )
    console.print(f"written to {args.out}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", type=int, default=100_000)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--markets", type=int, default=50)
    parser.add_argument("--orders-per-store", type=int, default=2)
    parser.add_argument("--artifact", type=Path, help="an artifact directory (default: train)")
    parser.add_argument("--train-rows", type=int, default=100_000)
    parser.add_argument("--max-rounds", type=int, default=2000)
    parser.add_argument("--profile-stores", type=int, default=10_000)
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser


def _measure(
    args: argparse.Namespace, console: Console
) -> tuple[EtaModel, int, dict[str, Any], list[dict[str, Any]], dict[str, Any] | None]:
    """On a fresh stack with ``--stores`` seeded: scoring alone (compiled and LightGBM), two
    whole ``eta predict batch`` runs, and a cProfile of a smaller one. Returns the compiled
    model, the rows scored, the scoring figures, the runs and the profile (or None)."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        start_stack(Settings(data_dir=Path(tmp) / "stack")) as urls,
    ):
        workdir = Path(tmp)
        artifact = bench_artifact(args.artifact, args.train_rows, args.max_rounds)
        compiled = register(artifact, workdir / "models")
        lightgbm = EtaModel(
            compiled.path, compiled.metadata, compiled.booster, compiled.model_sha256
        )
        client = redis.Redis.from_url(urls.redis_url, socket_timeout=60)
        now = datetime.now(UTC)
        orders = seed_state(
            client,
            now,
            stores=args.stores,
            markets=args.markets,
            orders=args.stores * args.orders_per_store,
        )
        profiles = store_profiles(orders_frame(orders), now)
        console.print(f"{profiles.height:,} active stores × {args.slots} slots")

        rows = _rows(client, profiles, args.slots, now)
        scoring = {
            "compiled": _scoring(compiled, rows, 5),
            "lightgbm": _scoring(lightgbm, rows[:100_000], 2),
        }
        runs = []
        for _ in range(2):
            client.config_resetstat()
            run = run_batch(
                client,
                profiles,
                compiled,
                as_of=datetime.now(UTC),
                slots=args.slots,
                out_dir=workdir / "batch",
            )
            runs.append({**run.as_dict(), "redis_busy_s": _redis_busy(client)})
        profile = None
        if not args.no_profile:
            profile = _profile(
                client, profiles.head(args.profile_stores), compiled, args.slots, workdir / "p"
            )

    return compiled, rows.shape[0], scoring, runs, profile


def _print_tables(
    console: Console,
    args: argparse.Namespace,
    n_rows: int,
    scoring: dict[str, Any],
    runs: list[dict[str, Any]],
    profile: dict[str, Any] | None,
) -> None:
    table = Table(title=f"batch scoring, {n_rows:,} rows, {os.cpu_count()} cores")
    for column in ("engine", "rows", "best s", "rows/s (best)", "rows/s (median)"):
        table.add_column(column, justify="right")
    for name, s in scoring.items():
        table.add_row(
            name,
            f"{s['rows']:,}",
            f"{s['best_s']:.3f}",
            f"{s['rows_per_s_best']:,}",
            f"{s['rows_per_s_median']:,}",
        )
    console.print(table)
    whole = Table(title=f"eta predict batch: {args.stores:,} stores × {args.slots} slots")
    for column in ("run", "predictions", "seconds", "predictions/s", *runs[0]["stage_seconds"]):
        whole.add_column(column, justify="right")
    for i, r in enumerate(runs, 1):
        whole.add_row(
            str(i),
            f"{r['rows']:,}",
            f"{r['seconds']:.1f}",
            f"{r['rows_per_s']:,.0f}",
            *(f"{v:.1f}" for v in r["stage_seconds"].values()),
        )
    console.print(whole)
    for i, r in enumerate(runs, 1):
        busy = ", ".join(f"{k} {v:.1f} s" for k, v in r["redis_busy_s"].items())
        console.print(f"run {i}: Redis busy in {busy}")
    if profile:
        top = Table(title=f"cProfile of a {profile['stores']:,}-store run (main thread)")
        for column in ("function", "own s", "share"):
            top.add_column(column, justify="right" if column != "function" else "left")
        for row in profile["top_tottime"][:10]:
            top.add_row(row["function"], f"{row['tottime_s']:.2f}", f"{row['share']:.0%}")
        console.print(top)


def _report(
    args: argparse.Namespace,
    compiled: EtaModel,
    scoring: dict[str, Any],
    runs: list[dict[str, Any]],
    profile: dict[str, Any] | None,
) -> dict[str, Any]:
    """What ``--out`` holds."""
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_end": os.getloadavg(),
        },
        "model": {
            "num_trees": compiled.metadata.get("num_trees"),
            "features": len(compiled.feature_names),
        },
        "state": {
            "stores": args.stores,
            "markets": args.markets,
            "orders_last_hour": args.stores * args.orders_per_store,
        },
        "targets": {"scoring_rows_per_s": 500_000, "run_100k_x_4_s": 30},
        "scoring": scoring,
        "runs": runs,
        "profile": profile,
    }


if __name__ == "__main__":
    main()

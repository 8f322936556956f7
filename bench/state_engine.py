"""The rules engine alone: where the worker's feature update spends its time, per stage.

``ReplayState`` is the one implementation of the window rules (stream_features/replay_state.py).
This bench runs it in process, with no broker and no Redis, on the steady load of
``bench/loads.py`` (2,000 stores in 6 markets), in batches as the worker applies them
and with ``changes`` collected as the worker does, and times three stages apart:

- ``apply_and_read``: each event applied, each order read just before its own event;
- ``rows``: the reads finished into model rows (``Reads.rows``, ``finish_rows``);
- ``encode views``: the views of the changed entities encoded for the write-behind
  (``state_codec.encode_view``), which the worker does once per batch per changed entity.

It is the number to move when the per-event loop is compiled or the view encoding changes.

    python -m bench.state_engine                # 200k events, ~1 minute here
    python -m bench.state_engine --events 50000 --batch 100

Prints a table and writes ``bench/results/state_engine.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from itertools import repeat
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.loads import steady_load
from stream_features.replay_state import Changes, ReplayState, apply_and_read
from stream_features.state_codec import encode_view
from stream_features.wire_decode import to_wire

RESULTS = Path(__file__).parent / "results" / "state_engine.json"
STAGES = ("apply_and_read", "rows", "encode views")


def run(n_events: int, batch: int) -> dict[str, object]:
    """Time each stage over ``n_events`` applied ``batch`` at a time."""
    events = [to_wire(e) for e in steady_load(n_events)]
    state = ReplayState()
    spent = dict.fromkeys(STAGES, 0.0)
    orders = 0
    for i in range(0, len(events), batch):
        chunk = events[i : i + batch]
        changes = state.changes = Changes()
        t0 = time.perf_counter()
        reads = apply_and_read(chunk, repeat(state))
        t1 = time.perf_counter()
        reads.rows({})
        t2 = time.perf_counter()
        {key: encode_view(state.entities[key]) for key in changes.views}
        t3 = time.perf_counter()
        spent["apply_and_read"] += t1 - t0
        spent["rows"] += t2 - t1
        spent["encode views"] += t3 - t2
        orders += len(reads.orders)
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average": list(os.getloadavg()),
        },
        "events": len(events),
        "orders": orders,
        "batch": batch,
        "stages": {
            name: {
                "seconds": s,
                "us_per_event": s / len(events) * 1e6,
                "us_per_order": s / max(orders, 1) * 1e6,
            }
            for name, s in spent.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    result = run(args.events, args.batch)
    table = Table(title=f"rules engine, {result['events']:,} events, batch {args.batch}")
    for column in ("stage", "s", "µs/event", "µs/order"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    stages: dict[str, dict[str, float]] = result["stages"]  # type: ignore[assignment]  # built above
    for name, row in stages.items():
        cells = (row["seconds"], row["us_per_event"], row["us_per_order"])
        table.add_row(name, *(f"{v:.2f}" for v in cells))
    Console().print(table)
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()

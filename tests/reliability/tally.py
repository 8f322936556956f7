"""Counting what a scenario sent against what came out, and the suite's summary table.

A scenario's row says how many events it sent, how many predictions it read back, how many of
its orders got none (``lost``, which must be 0) and how many predictions were extra copies of
an order already predicted (``duplicated``, allowed under at-least-once and reported).
"""

from __future__ import annotations

import os
import platform
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

__all__ = ["Row", "Tally", "format_table", "save_results", "tally"]


@dataclass(frozen=True)
class Tally:
    """Predictions read back against the orders sent.

    >>> t = tally([b"a", b"b", b"c"], [b"a", b"b", b"a", b"x"])
    >>> (t.orders, t.predictions, t.predicted, t.lost, t.duplicated, t.unexpected)
    (3, 4, 2, 1, 1, 1)
    >>> sorted(t.missing)
    [b'c']
    """

    orders: int
    predictions: int
    predicted: int
    lost: int
    duplicated: int
    unexpected: int
    missing: frozenset[bytes]


def tally(order_ids: Iterable[bytes], prediction_keys: Iterable[bytes | None]) -> Tally:
    """Count predictions per order id; an order without one is lost."""
    expected = set(order_ids)
    counts = Counter(prediction_keys)
    seen = expected & set(counts)
    return Tally(
        orders=len(expected),
        predictions=sum(counts.values()),
        predicted=len(seen),
        lost=len(expected) - len(seen),
        duplicated=sum(n - 1 for key, n in counts.items() if key in expected),
        unexpected=sum(n for key, n in counts.items() if key not in expected),
        missing=frozenset(expected - seen),
    )


@dataclass
class Row:
    """One scenario's line in the summary; the test fills in the counts as it learns them."""

    scenario: str
    events_sent: int = 0
    orders_sent: int = 0
    predictions: int = 0
    lost: int | None = None
    duplicated: int | None = None
    seconds: float = 0.0
    outcome: str = "not run"
    notes: dict[str, Any] = field(default_factory=dict)

    def count(self, events_sent: int, t: Tally) -> None:
        self.events_sent, self.orders_sent = events_sent, t.orders
        self.predictions, self.lost, self.duplicated = t.predictions, t.lost, t.duplicated


def format_table(rows: list[Row]) -> str:
    """The summary as a fixed-width table.

    >>> print(format_table([Row("demo", 10, 5, 6, 0, 1, 2.5, "passed")]))
    scenario  events sent  orders  predictions  lost  duplicated  seconds  outcome
    demo               10       5            6     0           1      2.5  passed
    """
    header = ["scenario", "events sent", "orders", "predictions", "lost", "duplicated"]
    lines = [[*header, "seconds", "outcome"]]
    for r in rows:
        counts = (r.events_sent, r.orders_sent, r.predictions, r.lost, r.duplicated)
        cells = [f"{c:,}" if c is not None else "-" for c in counts]
        lines.append([r.scenario, *cells, f"{r.seconds:.1f}", r.outcome])
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = []
    for line in lines:
        padded = [line[0].ljust(widths[0])]
        padded += [c.rjust(w) for c, w in zip(line[1:-1], widths[1:-1], strict=True)]
        out.append("  ".join([*padded, line[-1]]).rstrip())
    return "\n".join(out)


def save_results(rows: list[Row], path: Path, total_s: float) -> None:
    """The summary as JSON, with the machine it ran on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_1m_at_end": round(os.getloadavg()[0], 1),
        },
        "ran_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "total_seconds": round(total_s, 1),
        "scenarios": [asdict(r) for r in rows],
    }
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")

"""What the producer commands show: rich progress bars on stderr, summaries on stdout."""

from __future__ import annotations

import contextlib
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import orjson
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from producers.replay import Rejection
from producers.tail import Shown
from stream_features.contract import Event, event_time, shown
from stream_features.event_log import LogLine
from stream_features.log_report import LogReport

__all__ = [
    "event_time_progress",
    "live_progress",
    "print_counts",
    "print_log_report",
    "print_rejections",
    "replay_progress",
    "tail_printer",
]

_err = Console(stderr=True)
_out = Console()
_EVERY = 500  # events between progress refreshes: rich is too slow to call per event


def _printable(text: str) -> str:
    """``text`` with control characters escaped, so no message can drive the terminal.

    >>> _printable("ok\\x1b[2J\\n")
    'ok\\\\x1b[2J\\\\n'
    """
    return shown(text, limit=None)


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=_err,
        transient=False,
    )


@contextlib.contextmanager
def live_progress(description: str, total_s: float) -> Iterator[Callable[[Event], None]]:
    """A bar over wall-clock seconds with the events and orders/s so far."""
    counts = [0, 0]
    wall0 = time.monotonic()
    with _progress() as progress:
        task = progress.add_task(description, total=total_s, info="")

        def on_event(event: Event) -> None:
            counts[0] += 1
            counts[1] += event.type == "OrderCreated"
            if counts[0] % _EVERY == 0 or counts[0] < _EVERY:
                elapsed = time.monotonic() - wall0
                rate = counts[1] / elapsed if elapsed > 0 else 0.0
                info = f"{counts[0]:,} events, {rate:,.1f} orders/s"
                progress.update(task, completed=min(elapsed, total_s), info=info)

        yield on_event
        progress.update(task, completed=total_s)


@contextlib.contextmanager
def event_time_progress(
    description: str, start: datetime, end: datetime
) -> Iterator[Callable[[Event], None]]:
    """A bar over the simulated period, advanced by each event's time."""
    total = (end - start).total_seconds()
    seen = [0]
    with _progress() as progress:
        task = progress.add_task(description, total=total, info="")

        def on_event(event: Event) -> None:
            seen[0] += 1
            if seen[0] % (_EVERY * 10) == 0:
                done = (event_time(event) - start).total_seconds()
                progress.update(task, completed=done, info=f"{seen[0]:,} events")

        yield on_event
        progress.update(task, completed=total, info=f"{seen[0]:,} events")


@contextlib.contextmanager
def replay_progress(name: str, total: int) -> Iterator[Callable[[LogLine], None]]:
    """A bar over the log's records with the rate so far."""
    seen = [0]
    wall0 = time.monotonic()
    with _progress() as progress:
        task = progress.add_task(f"replaying {name}", total=max(total, 1), info="")

        def on_line(line: LogLine) -> None:
            seen[0] += 1
            if seen[0] % _EVERY == 0 or seen[0] < _EVERY:
                rate = seen[0] / max(time.monotonic() - wall0, 1e-9)
                progress.update(task, completed=seen[0], info=f"{rate:,.0f} lines/s")

        yield on_line
        progress.update(task, completed=max(total, seen[0]))


def print_counts(title: str, by_type: Counter[str], extra: dict[str, Any]) -> None:
    table = Table(title=title, show_header=True)
    table.add_column("what")
    table.add_column("count", justify="right")
    for kind, count in sorted(by_type.items()):
        table.add_row(kind, f"{count:,}")
    table.add_row("[bold]all events", f"[bold]{sum(by_type.values()):,}")
    for key, value in extra.items():
        table.add_row(key, f"{value:,}" if isinstance(value, int) else str(value))
    _out.print(table)


def print_rejections(rejections: list[Rejection], total: int) -> None:
    if not total:
        return
    _out.print(f"[bold red]{total:,} line(s) rejected[/]; the first {len(rejections)}:")
    for rejection in rejections:
        _out.print(f"  line {rejection.line_no}: {rejection.reason}", markup=False)


def print_log_report(report: LogReport) -> None:
    """Counts by rejection reason and by finding rule, and where every line of them is."""
    for line in report.summary():
        _out.print(_printable(line), markup=False, highlight=False, soft_wrap=True)


def tail_printer() -> Callable[[Shown], None]:
    """Decoded messages as one JSON line each on stdout (highlighted on a terminal)."""
    pretty = sys.stdout.isatty()

    def emit(shown: Shown) -> None:
        if shown.message is None:
            where = f"partition {shown.partition} offset {shown.offset}"
            # the reason and the bytes are the sender's: no markup, no terminal escapes
            raw = _printable((shown.raw or b"")[:200].decode("utf-8", "replace"))
            _err.print(f"[red]undecodable[/] ({where}): {escape(_printable(shown.reason or ''))}")
            if raw:
                _err.print(f"  raw: {raw}", markup=False, highlight=False)
            return
        line = orjson.dumps(shown.message).decode()
        if pretty:
            _out.print_json(line, indent=None)
        else:
            print(line, flush=True)

    return emit

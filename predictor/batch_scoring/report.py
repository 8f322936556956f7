"""What ``eta predict batch`` shows: a progress bar while it runs, a summary table after."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from predictor.batch_scoring.job import BatchRun

__all__ = ["progress_bar", "summary_table"]


@contextmanager
def progress_bar(console: Console, stores: int, slots: int) -> Iterator[Callable[[int], None]]:
    """A bar over the stores; yields the callback ``run_batch`` advances it with."""
    progress = Progress(
        TextColumn("[bold]scoring stores"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    with progress:
        task = progress.add_task("stores", total=stores, rate="")

        def advance(done: int) -> None:
            progress.advance(task, done)
            elapsed = progress.tasks[task].elapsed or 0.0
            rows = progress.tasks[task].completed * slots
            if elapsed > 0:
                progress.update(task, rate=f"{rows / elapsed:,.0f} predictions/s")

        yield advance


def summary_table(run: BatchRun) -> Table:
    """The run summary: what was scored, by which model, how fast, and where it went."""
    table = Table(title=f"batch run {run.version}", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    rows = [
        ("as of", run.as_of.isoformat()),
        ("model", f"{run.model_name}:{run.model_version} ({run.backend or '?'})"),
        (
            "stores",
            f"{run.stores:,}" + (f" ({run.skipped_stores} skipped)" if run.skipped_stores else ""),
        ),
        ("slots", str(run.slots)),
        ("predictions", f"{run.rows:,}"),
        ("seconds", f"{run.seconds:.2f}"),
        ("predictions/s", f"{run.rows_per_s:,.0f}"),
        ("stages (s)", ", ".join(f"{k} {v:.2f}" for k, v in run.stage_seconds.items())),
        ("Parquet", str(run.parquet_dir) if run.parquet_dir else "-"),
        ("Redis", f"{run.redis_key} (current)" if run.redis_key else "-"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table

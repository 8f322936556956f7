"""``eta demo``: what a newcomer runs first (see ``predictor.demo.run``)."""

from __future__ import annotations

from pathlib import Path

import typer

__all__ = ["demo", "register"]


def demo(
    out: Path = typer.Option(Path("eta-demo"), help="where everything the demo makes goes"),
    live_seconds: float = typer.Option(60.0, min=10, help="seconds of live traffic"),
    rate: float = typer.Option(6.0, min=0.5, help="orders/s, in the history and live"),
    stores: int = typer.Option(300, min=10, help="stores in the simulated marketplace"),
    markets: int = typer.Option(4, min=1, help="markets (m1..mN)"),
    history_hours: float = typer.Option(4.0, min=0.5, help="hours of history to train on"),
    max_rounds: int = typer.Option(150, min=10, help="boosting rounds per model"),
    shock: bool = typer.Option(
        True, "--shock/--no-shock", help="a dasher shortage in m1 midway, for the drift monitor"
    ),
    seed: int = typer.Option(0, help="the simulator's seed"),
) -> None:
    """Run the whole system end to end: stack, history, features, training, stream, API,
    monitor, live traffic with a dashboard, a hot model swap, batch predictions, a report."""
    from rich.console import Console
    from rich.table import Table

    from predictor.demo.plan import DemoConfig
    from predictor.demo.processes import DemoError
    from predictor.demo.run import run_demo

    if out.exists() and any(out.iterdir()):
        raise typer.BadParameter(
            f"{out} is not empty: give a new directory (a demo never overwrites one)",
            param_hint="--out",
        )
    config = DemoConfig(
        out_dir=out,
        live_s=live_seconds,
        rate=rate,
        stores=stores,
        markets=markets,
        history_hours=history_hours,
        max_rounds=max_rounds,
        shock=DemoConfig.shock if shock else None,
        seed=seed,
    )
    console = Console()
    try:
        summary = run_demo(config, console)
    except DemoError as exc:
        console.print(f"[red]demo failed:[/] {exc}")
        raise typer.Exit(1) from None
    table = Table(title=f"etastream demo: done in {summary.seconds:.0f} s", title_justify="left")
    table.add_column("what")
    table.add_column("where / how many", overflow="fold")  # a path whole, over two lines
    for name, path in summary.paths.items():
        table.add_row(name, path)
    table.add_row("orders consumed by the worker", f"{summary.orders_consumed:,.0f}")
    by_version = ", ".join(
        f"v{v}: {n:,}" for v, n in sorted(summary.predictions_by_version.items())
    )
    table.add_row(
        "predictions read back (by version)", f"{summary.predictions_read:,} ({by_version})"
    )
    table.add_row("dead letters", f"{summary.dead_letters:,.0f}")
    table.add_row("worker exit code after SIGTERM", str(summary.worker_exit))
    console.print(table)
    console.print(
        f"open {summary.paths.get('report', '')} in a browser; summary: "
        f"{(out / 'summary.json').resolve()}",
        soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    app.command()(demo)

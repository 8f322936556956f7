"""``eta models promote-if-better``: promote the shadow challenger only on live evidence."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from stream_features.settings import Settings

__all__ = ["promote_if_better"]

_console = Console()


def _evidence_table(evidence: dict[str, object]) -> Table:
    table = Table(title="champion against challenger on the same delivered orders")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in evidence.items():
        shown = f"{value:.2f}" if isinstance(value, float) else str(value)
        table.add_row(key, shown)
    return table


def promote_if_better(
    stage: str = typer.Option("staging", help="the challenger's stage (the shadow's)"),
    name: str = typer.Option(None, help="model name (default: ETA_MODEL_NAME)"),
    min_orders: int = typer.Option(
        None, help="fewest joined orders both scored (default: ETA_PROMOTE_MIN_ORDERS)"
    ),
    monitor_dir: Path = typer.Option(
        None, help="where `eta monitor` records (default: ETA_DATA_DIR/monitor)"
    ),
) -> None:
    """Promote the version at STAGE to production only if it beats production on live orders.

    Reads the shadow pairs `eta monitor` recorded (ETA_SHADOW_STAGE on the worker), and
    promotes when at least --min-orders delivered orders were scored by both versions and the
    95% CI of the mean difference of absolute errors (challenger - champion) is below 0.
    Otherwise it refuses and exits 2. Either way the decision and its numbers are kept in the
    registry (decisions.jsonl).
    """
    from predictor.models.guard import decide, record_decision
    from predictor.models_cli import _errors, _registry, _report_move
    from predictor.monitoring.recording import read_paired
    from predictor.monitoring.runner import record_dir

    settings = Settings()
    with _errors():
        registry = _registry(settings)
        name = name or settings.model_name
        aliases = registry.aliases(name)
        pairs = read_paired(monitor_dir or record_dir(settings))
        decision = decide(
            pairs,
            name=name,
            stage=stage,
            champion=aliases.get("production"),
            challenger=aliases.get(stage),
            min_orders=min_orders or settings.promote_min_orders,
        )
        if decision.evidence:
            _console.print(_evidence_table(decision.evidence))
        if decision.outcome == "promoted":
            assert decision.challenger_version is not None
            move = registry.promote(name, decision.challenger_version, "production")
            record_decision(registry, decision)
            _console.print(f"[bold green]promoted:[/] {escape(decision.reason)}")
            _report_move(move)
            return
        record_decision(registry, decision)
        _console.print(f"[bold red]refused:[/] {escape(decision.reason)}")
        raise typer.Exit(2)

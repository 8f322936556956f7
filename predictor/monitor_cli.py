"""``eta monitor``, ``eta report`` and ``eta retrain``: watching the models in production."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from rich.table import Table

    from predictor.monitoring.messages import RetrainReport

__all__ = ["monitor", "register", "report", "retrain"]


def monitor(
    retrain: bool = typer.Option(
        None,
        "--retrain/--no-retrain",
        help="retrain on MAE/PSI alerts (default: ETA_MONITOR_RETRAIN)",
    ),
    log_level: str = typer.Option("INFO", help="DEBUG, INFO, WARNING or ERROR"),
    json_logs: bool = typer.Option(True, "--json-logs/--plain-logs", help="JSON lines on stderr"),
) -> None:
    """Join predictions with deliveries; publish rolling error, drift and alerts.

    Consumes the deliveries and predictions topics in its own group, keeps MAE, bias and p90
    error per model version and market over 15 min, 1 h and 24 h, compares live features and
    predictions with the model artifact's reference (PSI), and publishes summaries and alerts
    to the monitoring topic and Prometheus. SIGTERM or Ctrl-C publishes, commits and exits 0;
    with the broker down it waits at most 5 s for it, says what is left uncommitted and exits
    3. See docs/monitoring.md.
    """
    import logging
    import threading

    from predictor.engines.runner import stop_on_signals
    from predictor.monitoring.runner import run_monitor
    from predictor.serving.logs import configure_logging
    from stream_features.errors import EtaError
    from stream_features.settings import Settings

    configure_logging(log_level, json_logs)
    settings = Settings()
    stop = threading.Event()
    stop_on_signals(stop, logging.getLogger("etastream.monitor"))
    try:
        code = run_monitor(settings, stop, retrain)
    except EtaError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(code)


def report(
    out: Path = typer.Option(
        ..., "--out", help="directory to write report.html into (a path ending .html: that file)"
    ),
    since_hours: float = typer.Option(None, help="only pairs delivered in the last N hours"),
) -> None:
    """Write a self-contained HTML report of what the monitor recorded (figures inline).

    Reads the joined pairs and latest summaries `eta monitor` keeps under
    ETA_DATA_DIR/monitor, and the feature importance of the versions in use from the
    registry (ETA_REGISTRY_DIR); needs no broker.
    """
    from datetime import timedelta

    from predictor.models.registry import Registry
    from predictor.monitoring.importance import importance_by_version, versions_in_use
    from predictor.monitoring.recording import read_joined, read_paired, read_summaries
    from predictor.monitoring.report import write_report
    from predictor.monitoring.runner import record_dir
    from stream_features.settings import Settings

    target = _report_target(out)
    settings = Settings()
    directory = record_dir(settings)
    joined = read_joined(directory)
    if since_hours is not None and not joined.is_empty():
        newest = joined["delivered_at"].max()
        joined = joined.filter(joined["delivered_at"] >= newest - timedelta(hours=since_hours))  # type: ignore[operator]  # a datetime column's max() is a datetime
    summaries = read_summaries(directory)
    if joined.is_empty() and not summaries:
        typer.echo(f"note: nothing recorded under {directory} yet; the report will be empty")
    importance = importance_by_version(
        Registry(settings.registry_dir), versions_in_use(joined, summaries)
    )
    try:
        path = write_report(
            target.parent,
            joined,
            summaries,
            psi_threshold=settings.psi_alert,
            drift_window=settings.monitor_drift_window,
            psi_exempt=frozenset(settings.monitor_psi_exempt),
            coverage_target=settings.monitor_coverage_target,
            coverage_tolerance=settings.monitor_coverage_tolerance,
            importance=importance,
            paired=read_paired(directory),
            name=target.name,
        )
    except OSError as exc:
        raise typer.BadParameter(
            f"cannot write {target}: {exc.strerror}", param_hint="--out"
        ) from None
    typer.echo(f"wrote {path} ({joined.height} joined pairs)")


def _report_target(out: Path) -> Path:
    """The report file ``--out`` names: ``<dir>/report.html``, or the .html path itself.

    >>> _report_target(Path("rep")), _report_target(Path("a/week.html"))
    (PosixPath('rep/report.html'), PosixPath('a/week.html'))
    """
    if out.suffix.lower() in (".html", ".htm"):
        if out.is_dir():
            return out / "report.html"
        return out
    if out.exists() and not out.is_dir():
        raise typer.BadParameter(
            f"{out} is a file; give a directory or a .html path", param_hint="--out"
        )
    return out / "report.html"


def retrain(
    reason: str = typer.Option("manual", help="recorded as the run's trigger"),
    as_json: bool = typer.Option(
        False, "--json", help="print the RetrainReport as JSON (for scripts) instead of a table"
    ),
) -> None:
    """Retrain on the monitor's recorded pairs now; staging, production only if it wins.

    The pairs of ETA_MODEL_NAME delivered in the last ETA_MONITOR_RETRAIN_WINDOW_S that carry
    their features are the training rows; the latest 20 % are held out. The new version is
    registered and pointed at by `staging`; it replaces production only when its holdout MAE is
    lower than production's on the same rows. Exits 0 when a version was staged or promoted,
    1 otherwise (skipped, refused, failed).
    """
    from rich.console import Console

    from predictor.models_cli import _registry
    from predictor.monitoring.runner import retrain_once
    from stream_features.settings import Settings

    settings = Settings()
    console = Console()
    with console.status(f"retraining {settings.model_name} on the recorded pairs…"):
        result = retrain_once(settings, _registry(settings), reason)
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
    else:
        console.print(_retrain_table(result))
    raise typer.Exit(0 if result.outcome in ("promoted", "staged") else 1)


def _retrain_table(report: RetrainReport) -> Table:
    """One retraining run: what it trained on, the two holdout MAEs, where the stages are."""
    from rich.markup import escape
    from rich.table import Table

    colour = {"promoted": "green", "staged": "green", "skipped": "yellow"}.get(
        report.outcome, "red"
    )

    def seconds(value: float | None) -> str:
        return "—" if value is None else f"{value:,.1f}"

    table = Table(title=f"retraining {report.model_name}", show_header=False)
    table.add_column()
    table.add_column(overflow="fold")
    for key, value in (
        ("outcome", f"[bold {colour}]{report.outcome}[/]: {escape(report.reason)}"),
        ("trigger", escape(report.trigger)),
        ("rows / held out", f"{report.rows:,} / {report.holdout_rows:,}"),
        ("holdout MAE (s), new", seconds(report.new_mae_s)),
        ("holdout MAE (s), production", seconds(report.production_mae_s)),
        ("staging", report.staged_version or "—"),
        ("production", report.production_version or "—"),
        ("at", f"{report.at:%Y-%m-%d %H:%M:%S %Z}"),
    ):
        table.add_row(key, value)
    return table


def register(app: typer.Typer) -> None:
    app.command()(monitor)
    app.command()(report)
    app.command()(retrain)

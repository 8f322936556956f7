"""The ``eta predict`` group: ``stream`` here; other serving commands join the same group."""

from __future__ import annotations

import typer

__all__ = ["predict_app", "register"]

predict_app = typer.Typer(help="Serve predictions: the stream worker and batch scoring.")


@predict_app.command()
def stream(
    engine: str = typer.Option(None, help="confluent or faust (default: ETA_ENGINE)"),
    log_level: str = typer.Option("INFO", help="DEBUG, INFO, WARNING or ERROR"),
    json_logs: bool = typer.Option(True, "--json-logs/--plain-logs", help="JSON lines on stderr"),
) -> None:
    """Consume orders and market events, predict every order, produce the predictions.

    At-least-once by default (offsets committed after the broker acknowledged every
    prediction); ETA_EXACTLY_ONCE=true uses Kafka transactions. SIGTERM or Ctrl-C finishes the
    batch in hand, flushes, commits and exits 0. See docs/streaming.md.
    """
    import threading

    from predictor.engines.runner import run_stream, stop_on_signals
    from predictor.serving.logs import configure_logging
    from stream_features.errors import EtaError
    from stream_features.settings import Settings

    configure_logging(log_level, json_logs)
    settings = Settings()
    chosen = engine or settings.engine
    if chosen not in ("confluent", "faust"):
        raise typer.BadParameter(f"{chosen!r} is not confluent or faust", param_hint="--engine")
    stop = threading.Event()
    stop_on_signals(stop)
    try:
        code = run_stream(settings, chosen, stop)
    except EtaError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.add_typer(predict_app, name="predict")

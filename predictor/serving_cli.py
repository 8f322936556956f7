"""The ``eta predict`` group: ``stream`` (the worker) and ``batch`` (precomputed store ETAs)."""

from __future__ import annotations

from pathlib import Path

import typer

__all__ = ["predict_app", "register"]

predict_app = typer.Typer(
    help="Serve predictions: the stream worker and batch scoring.", rich_markup_mode=None
)


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
    except ImportError as exc:  # an engine's optional dependency, e.g. etastream[faust]
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(code)


@predict_app.command()
def batch(
    history: Path = typer.Option(
        None, exists=True, dir_okay=False, help="event log to find active stores and baskets in"
    ),
    profiles: Path = typer.Option(
        None, exists=True, dir_okay=False, help="store profiles (Parquet) from an earlier run"
    ),
    as_of: str = typer.Option(None, help="ISO time of slot 0 (default: now)"),
    slots: int = typer.Option(None, min=1, help="hour slots per store (default: ETA_BATCH_SLOTS)"),
    out: Path = typer.Option(None, help="Parquet directory (default: ETA_BATCH_OUT_DIR)"),
    profile_days: int = typer.Option(28, min=1, help="days of history a store profile spans"),
    redis_out: bool = typer.Option(True, "--redis/--no-redis", help="publish to Redis"),
) -> None:
    """Precompute "the ETA if you order now" for every active store at each next hour slot.

    Reads the stream's feature state from Redis and scores with the production model
    (ETA_MODEL_NAME@ETA_SERVE_STAGE); writes a Parquet run under --out and, unless --no-redis,
    publishes it to Redis in one pointer swap for GET /v1/stores/{store_id}/eta. The basket
    each ETA is for is the store's median order (see docs/serving.md).
    """
    from predictor.batch_scoring.cli_run import batch_command

    code = batch_command(history, profiles, as_of, slots, out, profile_days, redis_out)
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.add_typer(predict_app, name="predict")

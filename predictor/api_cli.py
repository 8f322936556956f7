"""``eta serve``: the HTTP API under uvicorn, one worker process unless asked for more."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import typer

__all__ = ["register", "serve"]


def _graceful_server() -> type:
    import uvicorn

    class GracefulServer(uvicorn.Server):
        """Exits 0 after a clean stop on SIGTERM or Ctrl-C.

        uvicorn raises the signal again once it has shut down, so the process would end as
        "killed by SIGTERM" although every request in flight was answered; like the stream
        worker, a requested stop exits 0.
        """

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                try:
                    yield
                finally:
                    getattr(self, "_captured_signals", []).clear()

    return GracefulServer


def serve(
    host: str = typer.Option(None, help="address to bind (default: ETA_HTTP_HOST)"),
    port: int = typer.Option(None, help="port (default: ETA_HTTP_PORT)"),
    workers: int = typer.Option(1, min=1, help="uvicorn worker processes"),
    log_level: str = typer.Option("INFO", help="DEBUG, INFO, WARNING or ERROR"),
    json_logs: bool = typer.Option(True, "--json-logs/--plain-logs", help="JSON lines on stderr"),
) -> None:
    """Serve online predictions, streamed and batch lookups, health and metrics over HTTP.

    POST /v1/predictions, GET /v1/predictions/{order_id}, GET /v1/stores/{store_id}/eta,
    /healthz, /readyz, /metrics; the OpenAPI spec at /openapi.json. Needs ETA_REDIS_URL (the
    stream's Redis) and follows ETA_MODEL_NAME@ETA_SERVE_STAGE without a restart; /readyz says
    503 until a model is there. See docs/serving.md.
    """
    import redis
    import uvicorn

    from predictor.api.wiring import build_app
    from predictor.serving.heap import freeze_startup_heap
    from predictor.serving.logs import configure_logging
    from stream_features.errors import EtaError
    from stream_features.settings import Settings

    configure_logging(log_level, json_logs)
    settings = Settings()
    options: dict[str, Any] = {
        "host": host or settings.http_host,
        "port": port if port is not None else settings.http_port,
        "log_level": log_level.lower(),
        "access_log": False,  # one log line per request would cost more than the request
        "server_header": False,
        "log_config": None,  # keep the JSON logging configured above
        "timeout_graceful_shutdown": 10,
    }
    if workers > 1:
        uvicorn.run("predictor.api.wiring:app_from_env", factory=True, workers=workers, **options)
        return
    try:
        app = build_app(settings)
    except EtaError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except redis.RedisError as exc:
        typer.echo(f"error: Redis does not answer ({type(exc).__name__}: {exc})", err=True)
        raise typer.Exit(2) from None
    # What start-up built (FastAPI, pydantic, LightGBM, the model) lives as long as the
    # process: keep it out of the collector's reach, so a full collection under load walks
    # only request garbage (it took ~60 ms in the p99.9 of bench/online.py otherwise).
    freeze_startup_heap()
    _graceful_server()(uvicorn.Config(app, **options)).run()


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)

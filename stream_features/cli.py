"""Commands of the feature layer: ``eta up``, ``eta schema`` and the ``eta features`` group."""

from __future__ import annotations

import json
import signal
import threading

import typer
from rich.console import Console

from stream_features.settings import Settings

__all__ = ["features_app", "register"]

features_app = typer.Typer(
    help="Batch features and point-in-time training sets.", no_args_is_help=True
)
_console = Console()


def up() -> None:
    """Start the embedded broker and Redis (or check the configured ones) until Ctrl-C."""
    from stream_features.kafka_clients import ensure_topics
    from stream_features.stack import start_stack

    settings = Settings()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with start_stack(settings) as urls:
        ensure_topics(settings, urls.kafka_bootstrap_servers)
        _console.print("[bold green]etastream stack is up[/] — in another shell:")
        for key, value in urls.env().items():
            print(f"export {key}={value}", flush=True)
        if urls.embedded_kafka:
            _console.print(
                "[dim]the embedded broker keeps topics in memory: they start empty "
                "after a restart[/]"
            )
        stop.wait()
        _console.print("stopping…")
    _console.print("stopped; no broker or Redis process left behind")


def schema(name: str = typer.Argument(None, help="one message name; all when omitted")) -> None:
    """Print the JSON Schema of every message on the wire."""
    from stream_features.contract import json_schemas

    schemas = json_schemas()
    if name is not None:
        if name not in schemas:
            raise typer.BadParameter(f"{name!r} is not one of {', '.join(schemas)}")
        schemas = {name: schemas[name]}
    print(json.dumps(schemas, indent=2))


def register(app: typer.Typer) -> None:
    app.command()(up)
    app.command()(schema)
    app.add_typer(features_app, name="features")

"""The ``eta`` command: one Typer app whose groups follow the packages.

Each package owns its commands (``producers.cli``, ``stream_features.cli``, ``predictor.*``);
this module only puts them together. Command modules import heavy libraries inside the command
bodies so that ``eta --help`` stays fast.
"""

from __future__ import annotations

import typer

__all__ = ["app", "main"]

app = typer.Typer(
    name="eta",
    help="etastream: streaming delivery-time prediction on Kafka, Redis and LightGBM.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
    rich_markup_mode=None,  # plain help: wraps at 80 columns, where rich's panels cut words
)


def _version(show: bool) -> None:
    if show:
        from importlib.metadata import version

        typer.echo(f"etastream {version('etastream')}")
        raise typer.Exit()


@app.callback()
def _options(
    _version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="print the version and exit"
    ),
) -> None:
    """etastream: streaming delivery-time prediction on Kafka, Redis and LightGBM."""


def _register() -> None:
    import predictor.monitor_cli as monitor_cli
    from predictor import api_cli, demo_cli, models_cli
    from predictor.serving_cli import register as register_predict
    from producers import cli as producers_cli
    from stream_features import cli as features_cli

    demo_cli.register(app)
    features_cli.register(app)
    producers_cli.register(app)
    register_predict(app)
    models_cli.register(app)
    monitor_cli.register(app)
    api_cli.register(app)


def main() -> None:
    _register()
    app()


_register()

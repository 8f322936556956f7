"""Commands of the producers: the ``eta produce`` group and ``eta tail``."""

from __future__ import annotations

import typer

__all__ = ["produce_app", "register"]

produce_app = typer.Typer(help="Publish simulated or recorded events.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(produce_app, name="produce")

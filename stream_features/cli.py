"""Commands of the feature layer: ``eta up``, ``eta schema`` and the ``eta features`` group."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

from stream_features.settings import Settings

if TYPE_CHECKING:
    from stream_features.point_in_time import LoadedLog

__all__ = ["features_app", "register"]

features_app = typer.Typer(
    help="Batch features and point-in-time training sets.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
_console = Console()


def up() -> None:
    """Start the embedded broker and Redis (or check the configured ones) until Ctrl-C."""
    from stream_features.errors import EtaError
    from stream_features.kafka_clients import ensure_topics
    from stream_features.stack import start_stack

    settings = Settings()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with contextlib.ExitStack() as services:
        try:
            urls = services.enter_context(start_stack(settings))
        except EtaError as exc:  # another stack on the directory, a configured service down
            _console.print(f"[bold red]eta up: {exc}[/]", soft_wrap=True)
            raise typer.Exit(1) from None
        ensure_topics(settings, urls.kafka_bootstrap_servers)
        _console.print("[bold green]etastream stack is up[/] — in another shell:")
        for line in urls.exports():  # never a password: it is in the env, or in a variable
            print(line, flush=True)
        if urls.embedded_kafka:
            _console.print(
                "[dim]the embedded broker keeps topics in memory: they start empty "
                "after a restart[/]"
            )
        stop.wait()
        _console.print("stopping…")
    _console.print("stopped; no broker or Redis process left behind")


def schema(name: str = typer.Argument(None, help="one message name; all when omitted")) -> None:
    """Print the JSON Schema of every message on the wire (by name), or of one (bare, so it
    can go straight to a validator)."""
    from stream_features.contract import json_schemas

    schemas = json_schemas()
    if name is None:
        print(json.dumps(schemas, indent=2))
        return
    if name not in schemas:
        raise typer.BadParameter(f"{name!r} is not one of {', '.join(schemas)}")
    print(json.dumps(schemas[name], indent=2))


def _parse_time(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise typer.BadParameter(f"{value!r} has no timezone; add Z or +00:00")
    return parsed.astimezone(UTC)


def _rejects_option(command: str) -> Any:
    return typer.Option(
        None,
        help="JSONL file for every rejected line and data-quality finding (line, field, "
        f"reason); default: $ETA_DATA_DIR/rejects/<history name>.{command}.jsonl",
    )


_BATCH_REJECTS = _rejects_option("batch")
_TRAINING_SET_REJECTS = _rejects_option("training-set")


def _load(history: Path, rejects: Path | None, command: str, settings: Settings) -> LoadedLog:
    """The log's events, with the lines rejected and the findings counted by reason and rule
    in the summary and written one by one to the rejects file."""
    from stream_features.log_report import LogReport, default_rejects_path
    from stream_features.point_in_time import load_log

    path = rejects or default_rejects_path(settings.data_dir, history, command)
    with LogReport(path) as report:
        loaded = load_log(history, strict=settings.contract_strict, on_line=report.add)
    for line_no, reason in loaded.rejected[:10]:
        _console.print(f"  line {line_no}: {reason}", markup=False, highlight=False)
    style = "yellow" if report.rejected or report.findings else "green"
    for text in report.summary():
        _console.print(text, style=style, markup=False, highlight=False, soft_wrap=True)
    return loaded


@features_app.command("batch")
def batch_command(
    history: Path = typer.Option(..., exists=True, dir_okay=False, help="event log"),
    as_of: str = typer.Option(None, help="ISO time the features are as of (default: now)"),
    out: Path = typer.Option(Path("offline_store"), help="Parquet offline store directory"),
    redis_out: bool = typer.Option(True, "--redis/--no-redis", help="materialise to Redis"),
    rejects: Path | None = _BATCH_REJECTS,
) -> None:
    """Compute batch features from a history and materialise them (Redis + Parquet)."""

    from stream_features.batch import (
        compute_batch_tables,
        deliveries_frame,
        materialise_parquet,
        materialise_redis,
    )
    from stream_features.contract import OrderCreated, OrderDelivered
    from stream_features.redis_client import redis_client

    settings = Settings()
    moment = _parse_time(as_of)
    loaded = _load(history, rejects, "batch", settings)
    delivered = deliveries_frame(
        [e for e in loaded.events if isinstance(e, OrderCreated)],
        [e for e in loaded.events if isinstance(e, OrderDelivered)],
    )
    tables = compute_batch_tables(delivered, moment)
    version = moment.strftime("%Y%m%dT%H%M%SZ")
    where = materialise_parquet(tables, out, version)
    _console.print(f"offline store: {where} ({sum(t.height for t in tables.values())} rows)")
    if redis_out:
        url = settings.redis_url_value()
        if url is None:
            raise typer.BadParameter(
                "ETA_REDIS_URL is not set: run `eta up` and export what it "
                "prints, or pass --no-redis"
            )
        keys = materialise_redis(redis_client(url), tables, version)
        _console.print(f"Redis: version {version} is current ({keys} hashes)")


@features_app.command("training-set")
def training_set_command(
    history: Path = typer.Option(..., exists=True, dir_okay=False, help="event log"),
    out: Path = typer.Option(..., help="output Parquet file"),
    rejects: Path | None = _TRAINING_SET_REJECTS,
    since: str = typer.Option(
        None,
        help="ISO time: rows only for orders created from then on (the events before still "
        "build the state, so a history's first hours, whose windows are filling, stay out)",
    ),
    until: str = typer.Option(
        None,
        help="ISO time: rows only for orders created before then (a history's last orders "
        "are labelled only when delivered quickly: a biased sample)",
    ),
) -> None:
    """Build a point-in-time training set: each order's features as the stream saw them.

    Lines with data-quality findings (docs/contract.md) are kept and counted by rule, or with
    ETA_CONTRACT_STRICT=true rejected; rejected lines are counted by reason."""
    import time

    from stream_features.point_in_time import build_training_set

    settings = Settings()
    started = time.perf_counter()
    loaded = _load(history, rejects, "training-set", settings)
    frame = build_training_set(
        loaded.events,
        lateness_s=settings.lateness_s,
        since=None if since is None else _parse_time(since),
        until=None if until is None else _parse_time(until),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(out)
    took = time.perf_counter() - started
    _console.print(
        f"{frame.height} orders × {frame.width} columns → {out} in {took:.1f} s "
        f"({frame.height / max(took, 1e-9) * 60:,.0f} orders/min)"
    )


def register(app: typer.Typer) -> None:
    app.command()(up)
    app.command()(schema)
    app.add_typer(features_app, name="features")

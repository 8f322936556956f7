"""The body of ``eta predict batch``: settings, model and profiles in, a published run out."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import redis
from rich.console import Console

from predictor.batch_scoring.job import BatchRun, run_batch
from predictor.batch_scoring.profiles import PROFILE_SCHEMA, orders_frame, store_profiles
from predictor.batch_scoring.report import progress_bar, summary_table
from predictor.errors import OutputWriteError, StageNotSetError
from predictor.models.artifact import EtaModel
from predictor.models.compiled import with_scoring
from predictor.models.registry import Registry
from stream_features.errors import EtaError
from stream_features.redis_client import redis_client
from stream_features.settings import Settings

__all__ = ["batch_command", "load_profiles", "parse_as_of"]

_console = Console()


def parse_as_of(value: str | None) -> datetime:
    """An ISO time with a zone (default now), in UTC.

    >>> parse_as_of("2026-01-01T12:00:00+01:00").isoformat()
    '2026-01-01T11:00:00+00:00'
    """
    if value is None:
        return datetime.now(UTC)
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no timezone; add Z or +00:00")
    return parsed.astimezone(UTC)


def load_profiles(
    history: Path | None, profiles: Path | None, as_of: datetime, days: int
) -> pl.DataFrame:
    """Store profiles from an event log, or as saved by an earlier run."""
    if profiles is not None:
        frame = pl.read_parquet(profiles)
        missing = [c for c in PROFILE_SCHEMA if c not in frame.columns]
        if missing:
            raise ValueError(f"{profiles} is not a profiles table: no {', '.join(missing)}")
        return frame.select(list(PROFILE_SCHEMA)).cast(PROFILE_SCHEMA)
    assert history is not None
    from stream_features.contract import OrderCreated
    from stream_features.point_in_time import load_log

    loaded = load_log(history)
    if loaded.rejected:
        _console.print(f"[yellow]{len(loaded.rejected)} line(s) of {history} rejected[/]")
        for line_no, reason in loaded.rejected[:5]:
            _console.print(f"  line {line_no}: {reason}")
    orders = orders_frame(e for e in loaded.events if isinstance(e, OrderCreated))
    return store_profiles(orders, as_of, days)


def _model(settings: Settings, client: redis.Redis) -> EtaModel:
    registry = Registry(settings.registry_dir, client)
    version = registry.live_version(settings.model_name, settings.serve_stage)
    if version is None:
        raise StageNotSetError(settings.model_name, settings.serve_stage)
    _console.print(f"model {settings.model_name}:{version} ({settings.scoring} scoring)")
    return with_scoring(registry.load(settings.model_name, version), settings.scoring)


def batch_command(
    history: Path | None,
    profiles: Path | None,
    as_of_text: str | None,
    slots: int | None,
    out: Path | None,
    profile_days: int,
    redis_out: bool,
) -> int:
    """Run ``eta predict batch``; the exit code (2 for a usage or configuration problem)."""
    settings = Settings()
    if (history is None) == (profiles is None):
        _console.print("[bold red]error:[/] give exactly one of --history or --profiles")
        return 2
    url = settings.redis_url_value()
    if url is None:
        _console.print(
            "[bold red]error:[/] ETA_REDIS_URL is not set: the batch job reads the stream's "
            "feature state from Redis (run `eta up` and export what it prints)"
        )
        return 2
    try:
        as_of = parse_as_of(as_of_text)
        table = load_profiles(history, profiles, as_of, profile_days)
        client = redis_client(url, socket_timeout=30.0, socket_connect_timeout=2.0)
        model = _model(settings, client)
        k = slots or settings.batch_slots
        _console.print(f"{table.height:,} active stores × {k} slots as of {as_of.isoformat()}")
        with progress_bar(_console, table.height, k) as advance:
            run: BatchRun = run_batch(
                client if redis_out else None,
                table,
                model,
                as_of=as_of,
                slots=k,
                out_dir=out or settings.batch_out_dir,
                progress=advance,
                feature_client=client,
            )
    except OutputWriteError as exc:  # e.g. the disk is full: not a usage problem
        _console.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
        return 1
    except (EtaError, ValueError, redis.RedisError) as exc:
        _console.print(f"[bold red]error:[/] {exc}")
        return 2 if not isinstance(exc, redis.RedisError) else 1
    _console.print(summary_table(run))
    return 0

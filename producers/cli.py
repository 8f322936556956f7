"""Commands of the producers: the ``eta produce`` group and ``eta tail``.

Settings are read here, once per command; heavy imports wait inside the command bodies so that
``eta --help`` stays fast. Rendering (progress bars, summaries) lives in ``producers.console``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from producers.config import SimConfig
    from producers.publisher import Publisher
    from stream_features.settings import Settings

__all__ = ["produce_app", "register"]

produce_app = typer.Typer(
    help="Publish simulated or recorded events.", no_args_is_help=True, rich_markup_mode=None
)

MAX_RATE = 500.0
MarketsOpt = Annotated[int, typer.Option(help="markets to simulate (m1..mN)")]
StoresOpt = Annotated[int, typer.Option(help="stores over all markets")]
SeedOpt = Annotated[int, typer.Option(help="the same seed gives the same world and stream")]
ShockOpt = Annotated[
    list[str] | None,
    typer.Option(
        help="MARKET:KIND:START_OFFSET_S:FACTOR[:DURATION_S], KIND dasher_shortage or "
        "demand_surge, offset from the simulation's start; repeatable"
    ),
]
DasherOpt = Annotated[bool, typer.Option(help="publish shift_start/shift_end DasherEvents")]
SteadyOpt = Annotated[
    bool,
    typer.Option(
        "--steady",
        help="flat demand (no lunch/dinner peaks) and no supply drift: every hour like any "
        "other, so a short history describes the live traffic that follows it",
    ),
]
BurnInOpt = Annotated[
    float,
    typer.Option(
        min=0,
        max=7 * 86400,
        help="seconds simulated before the start and not published: the stream opens on a "
        "running marketplace (queues, busy dashers) rather than an empty one",
    ),
]


def _settings_with_broker() -> Settings:
    from producers.errors import NoBrokerConfigured
    from stream_features.settings import Settings

    settings = Settings()
    if not settings.kafka_bootstrap_servers:
        typer.secho(str(NoBrokerConfigured()), err=True, fg="red")
        raise typer.Exit(2)
    return settings


def _sim_config(
    markets: int,
    stores: int,
    shocks: list[str] | None,
    dasher_events: bool,
    orders_per_day: float | None = None,
    steady: bool = False,
    burn_in_s: float = 0.0,
) -> SimConfig:
    from pydantic import ValidationError

    from producers.config import SimConfig, parse_shock

    try:
        parsed = tuple(parse_shock(s) for s in shocks or ())
        extra: dict[str, object] = {}
        if orders_per_day is not None:
            extra["orders_per_day"] = orders_per_day
        if steady:
            extra.update(daily_cycle=False, supply_drift=0.0)
        extra["burn_in_s"] = int(burn_in_s)
        return SimConfig(
            markets=markets,
            stores=stores,
            shocks=parsed,
            dasher_events=dasher_events,
            **extra,
        )
    except (ValidationError, ValueError) as exc:
        raise typer.BadParameter(str(exc)) from None


def _parse_rate(rate: str) -> float | None:
    """Orders per second, or None for ``max``."""
    if rate.strip().lower() == "max":
        return None
    try:
        value = float(rate)
    except ValueError:
        raise typer.BadParameter(f"--rate is a number of orders/s or 'max', not {rate!r}") from None
    if not 0 < value <= MAX_RATE:
        raise typer.BadParameter(f"--rate must be in (0, {MAX_RATE:g}] orders/s or 'max'")
    return value


REPLAY_LINGER_MS = 50
"""How long a replay's producer fills a batch (live simulation keeps the client's 5 ms): a
paced replay otherwise writes a record batch or two per partition every 5 ms, and a partition
of many small batches is slow for the embedded broker to read (issue #22, docs/streaming.md)."""


def _publisher(settings: Settings, linger_ms: int | None = None) -> Publisher:
    """A Publisher on the configured broker, its topics created first."""
    from producers.publisher import Publisher, Routes
    from stream_features.kafka_clients import ensure_topics, producer_config

    try:
        ensure_topics(settings)
    except Exception as exc:
        typer.secho(f"cannot reach the broker to create topics: {exc}", err=True, fg="red")
        raise typer.Exit(1) from None
    config = producer_config(settings, writes=("sources",))
    if linger_ms is not None:
        config["linger.ms"] = linger_ms
    return Publisher(config, Routes.from_settings(settings))


@produce_app.command()
def simulate(
    rate: Annotated[str, typer.Option(help="orders/s of the live marketplace, or 'max'")] = "20",
    duration: Annotated[float, typer.Option(help="seconds to run", min=0.1)] = 60.0,
    seed: SeedOpt = 0,
    markets: MarketsOpt = 6,
    stores: StoresOpt = 2000,
    shock: ShockOpt = None,
    warmup: Annotated[
        float, typer.Option(help="seconds of simulated past sent at once before going live")
    ] = 0.0,
    demand: Annotated[
        float, typer.Option(help="with --rate max: the marketplace's orders/s at the start")
    ] = 200.0,
    max_lead: Annotated[
        float,
        typer.Option(help="with --rate max: how far event time may run ahead of the clock (s)"),
    ] = 600.0,
    dasher_events: DasherOpt = True,
    steady: SteadyOpt = False,
    burn_in: BurnInOpt = 0.0,
) -> None:
    """Publish a live simulated marketplace, event times around now, paced at RATE orders/s."""
    from producers.console import live_progress, print_counts
    from producers.errors import PublishError
    from producers.live import publish_live
    from producers.simulator import Marketplace, orders_per_day_for_rate

    settings = _settings_with_broker()
    per_s = _parse_rate(rate)
    now = datetime.now(UTC)
    start = now - timedelta(seconds=warmup)
    opd = orders_per_day_for_rate(
        per_s if per_s is not None else min(demand, MAX_RATE), now, daily_cycle=not steady
    )
    config = _sim_config(markets, stores, shock, dasher_events, opd, steady, burn_in)
    end = now + timedelta(seconds=duration) if per_s is not None else start + timedelta(days=30)
    publisher = _publisher(settings)
    events = Marketplace(config, seed).events(start, end)
    try:
        with publisher, live_progress("simulating", duration) as on_event:
            report = publish_live(
                events,
                publisher.publish,
                lead_s=0.0 if per_s is not None else min(max_lead, settings.max_future_skew_s),
                max_wall_s=duration + warmup if per_s is None else None,
                wait=publisher.poll,
                on_event=on_event,
            )
    except PublishError as exc:
        typer.secho(str(exc), err=True, fg="red")
        raise typer.Exit(1) from None
    print_counts(
        "published",
        report.by_type,
        {
            "acknowledged": publisher.sent,
            "failed": publisher.failed,
            "wall seconds": round(report.wall_s, 2),
            "orders/s achieved (after warm-up)": round(report.orders_per_s, 1),
            "events/s achieved": round(report.sent / max(report.wall_s, 1e-9), 1),
            "event time ahead of clock (s)": round(report.lead_s, 1),
        },
    )


@produce_app.command()
def history(
    out: Annotated[Path, typer.Option(help="the log to write: .parquet, .jsonl(.gz), .csv")],
    days: Annotated[float, typer.Option(help="days of history", min=0.01)] = 7.0,
    end: Annotated[
        str | None, typer.Option(help="ISO-8601 end with a timezone; default now (to the minute)")
    ] = None,
    seed: SeedOpt = 0,
    markets: MarketsOpt = 6,
    stores: StoresOpt = 2000,
    orders_per_day: Annotated[float, typer.Option(help="orders a day, all markets")] = 15_000.0,
    shock: ShockOpt = None,
    dasher_events: DasherOpt = True,
    steady: SteadyOpt = False,
    burn_in: BurnInOpt = 0.0,
    backfill_weeks: Annotated[
        int,
        typer.Option(
            min=0,
            max=4,
            help="also the same clock hours in each of N earlier weeks, sparse, so 28-day "
            "batch features of a short history come from data",
        ),
    ] = 0,
    backfill_share: Annotated[
        float, typer.Option(min=0.01, max=1.0, help="the backfill's share of the order rate")
    ] = 0.25,
    backfill_past_end: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="seconds each backfill week runs past the history's end, so the hour-of-week "
            "batch keys of live traffic that follows the history come from data",
        ),
    ] = 0.0,
) -> None:
    """Write a historical event log from the simulator (no broker needed)."""
    import time

    from producers.console import event_time_progress, print_counts
    from producers.history import write_history
    from stream_features.event_log import log_format

    try:
        log_format(out)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--out") from None
    stop = _parse_end(end)
    start = stop - timedelta(days=days)
    config = _sim_config(markets, stores, shock, dasher_events, orders_per_day, steady, burn_in)
    if backfill_weeks and days > 7:
        raise typer.BadParameter("--backfill-weeks needs --days 7 or less")
    wall0 = time.perf_counter()
    first = start - timedelta(days=7 * backfill_weeks)
    with event_time_progress(f"writing {out.name}", first, stop) as on_event:
        counts = write_history(
            out,
            start,
            stop,
            config,
            seed,
            on_event,
            backfill_weeks,
            backfill_share,
            timedelta(seconds=backfill_past_end),
        )
    wall = time.perf_counter() - wall0
    total = sum(counts.values())
    print_counts(
        f"{out} ({start:%Y-%m-%d %H:%M} → {stop:%Y-%m-%d %H:%M} UTC)",
        counts,
        {"seconds": round(wall, 2), "events/s": round(total / max(wall, 1e-9))},
    )


def _parse_end(end: str | None) -> datetime:
    if end is None:
        return datetime.now(UTC).replace(second=0, microsecond=0)
    try:
        value = datetime.fromisoformat(end)
    except ValueError:
        raise typer.BadParameter(f"{end!r} is not ISO-8601", param_hint="--end") from None
    if value.tzinfo is None:
        raise typer.BadParameter("give a timezone, e.g. 2026-03-01T00:00:00Z", param_hint="--end")
    return value.astimezone(UTC)


@produce_app.command()
def replay(
    file: Annotated[Path, typer.Argument(help="an event log: .jsonl(.gz), .csv(.gz), .parquet")],
    speed: Annotated[str, typer.Option(help="1 (real time), 60, any factor, or 'max'")] = "max",
    show_rejected: Annotated[int, typer.Option(help="rejected lines to list")] = 20,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="exit 1 if any line was rejected (for scripts); without it rejected lines "
            "are reported and the exit code is 0",
        ),
    ] = False,
    rejects: Annotated[
        Path | None,
        typer.Option(
            help="JSONL file for every rejected line and data-quality finding (line, field, "
            "reason); default: $ETA_DATA_DIR/rejects/<FILE name>.replay.jsonl",
        ),
    ] = None,
) -> None:
    """Replay a recorded log in its order, gaps scaled by SPEED; bad lines are reported.

    Lines with data-quality findings (docs/contract.md) are sent and counted by rule, or with
    ETA_CONTRACT_STRICT=true rejected. Exit codes: 0 when it got to the end (rejected lines
    included, unless --strict), 1 with --strict and a rejected line or when the broker refused
    records, 130 on Ctrl-C.
    """
    from producers.console import print_counts, print_log_report, print_rejections, replay_progress
    from producers.errors import PublishError
    from producers.replay import ReplayReport
    from producers.replay import replay as run_replay
    from stream_features.event_log import LogLine, count_records, iter_log, log_format
    from stream_features.log_report import LogReport, default_rejects_path

    if not file.exists():
        raise typer.BadParameter(f"{file} does not exist", param_hint="FILE")
    try:
        log_format(file)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="FILE") from None
    factor = _parse_speed(speed)
    settings = _settings_with_broker()
    publisher = _publisher(settings, REPLAY_LINGER_MS)
    report, interrupted = ReplayReport(), False
    found = LogReport(rejects or default_rejects_path(settings.data_dir, file, "replay"))
    try:
        with publisher, found, replay_progress(file.name, count_records(file)) as progress:

            def on_line(line: LogLine) -> None:
                progress(line)
                found.add(line)

            try:
                run_replay(
                    iter_log(file, strict=settings.contract_strict),
                    publisher.publish,
                    factor,
                    wait=publisher.poll,
                    keep_rejections=show_rejected,
                    on_line=on_line,
                    report=report,
                )
            except KeyboardInterrupt:  # what was sent is flushed and reported, then exit 130
                interrupted = True
    except PublishError as exc:
        typer.secho(str(exc), err=True, fg="red")
        raise typer.Exit(1) from None
    span = (
        f"{report.first_event_at:%Y-%m-%d %H:%M:%S} → {report.last_event_at:%Y-%m-%d %H:%M:%S}"
        if report.first_event_at and report.last_event_at
        else "none"
    )
    print_counts(
        f"replayed {file}" + (" (interrupted: Ctrl-C)" if interrupted else ""),
        report.by_type,
        {
            "sent": report.sent,
            "acknowledged": publisher.sent,
            "rejected": report.rejected,
            "data-quality findings (sent)": found.findings,
            "event time span": f"{span} ({report.span_s:,.0f} s)",
            "events/s": round(report.sent / max(report.wall_s, 1e-9), 1),
        },
    )
    print_rejections(report.rejections, report.rejected)
    print_log_report(found)
    if interrupted:
        raise typer.Exit(130)
    if strict and report.rejected:
        typer.secho(
            f"--strict: {report.rejected:,} line(s) of {file} rejected; the rest was sent",
            err=True,
            fg="red",
        )
        raise typer.Exit(1)


def _parse_speed(speed: str) -> float | None:
    """A replay speed factor, or None for ``max``."""
    if speed.strip().lower() == "max":
        return None
    try:
        value = float(speed)
    except ValueError:
        raise typer.BadParameter(f"--speed is a factor or 'max', not {speed!r}") from None
    if value <= 0:
        raise typer.BadParameter("--speed must be positive")
    return value


def tail(
    topic: Annotated[
        str,
        typer.Argument(
            help="a topic name, or orders, dasher-events, deliveries, predictions, dlq, monitoring"
        ),
    ],
    from_beginning: Annotated[bool, typer.Option(help="start at the oldest message")] = False,
    max_messages: Annotated[int | None, typer.Option("--max", help="stop after N")] = None,
    timeout: Annotated[
        float | None, typer.Option(help="stop after S seconds without a message")
    ] = None,
) -> None:
    """Print the messages of a topic as JSON lines; undecodable ones with their reason.

    Without --from-beginning it follows the topic from its end: only messages that arrive
    from now on."""
    from producers.console import tail_printer
    from producers.tail import follow, resolve_topic, topic_aliases

    settings = _settings_with_broker()
    aliases = topic_aliases(settings)
    name = resolve_topic(topic, aliases)
    consumer = _tail_consumer(settings, name, from_beginning, aliases)
    if not from_beginning:  # else a quiet topic looks like a hung command
        typer.echo(
            f"following {name} from its end (--from-beginning for what is there); Ctrl-C stops",
            err=True,
        )
    event_topics = {settings.orders_topic, settings.dasher_events_topic, settings.deliveries_topic}
    try:
        follow(consumer, tail_printer(), max_messages, timeout, strict=name in event_topics)
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()


def _tail_consumer(
    settings: Settings, topic: str, from_beginning: bool, aliases: dict[str, str] | None = None
) -> Any:
    import uuid

    from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition

    from stream_features.kafka_clients import consumer_config

    consumer = Consumer(consumer_config(settings, group=f"eta-tail-{uuid.uuid4().hex[:8]}"))
    metadata = consumer.list_topics(topic, timeout=10)
    found = metadata.topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        existing = sorted(
            t for t in consumer.list_topics(timeout=10).topics if not t.startswith("_")
        )
        consumer.close()
        typer.secho(f"no topic {topic!r} on {settings.kafka_bootstrap_servers}", err=True, fg="red")
        there = ", ".join(existing) or "none"
        typer.echo(f"aliases: {', '.join(aliases or {})}; topics there: {there}", err=True)
        raise typer.Exit(1)
    start = OFFSET_BEGINNING if from_beginning else OFFSET_END
    consumer.assign([TopicPartition(topic, p, start) for p in sorted(found.partitions)])
    return consumer


def register(app: typer.Typer) -> None:
    app.add_typer(produce_app, name="produce")
    app.command()(tail)

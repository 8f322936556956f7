"""Write a historical event log from the simulator: the training data and the file to replay."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

from producers.config import SimConfig
from producers.simulator import Marketplace
from stream_features.contract import Event
from stream_features.event_log import write_log

__all__ = ["write_history"]


def write_history(
    path: str | Path,
    start: datetime,
    end: datetime,
    config: SimConfig | None = None,
    seed: int = 0,
    on_event: Callable[[Event], None] | None = None,
    backfill_weeks: int = 0,
    backfill_share: float = 0.25,
    backfill_past_end: timedelta = timedelta(0),
) -> Counter[str]:
    """Simulate ``[start, end)`` into the log at ``path``; return the events by type.

    ``backfill_weeks`` first adds the same clock hours in each of that many earlier weeks at
    ``backfill_share`` of the rate (same world, same stores): a sparse past from which the
    28-day batch features of a short history are computed, instead of their defaults.
    ``backfill_past_end`` stretches each backfill week that far past the history's end: live
    traffic that follows the history reads hour-of-week batch keys of its own clock hours,
    which would otherwise hold no data (the demo's live hour is hours after its history).
    """
    counts: Counter[str] = Counter()
    config = config or SimConfig()
    if backfill_weeks and end + backfill_past_end - start > timedelta(days=7):
        raise ValueError(
            "a backfill repeats the history's hours a week earlier: keep it (with the hours "
            "past its end) ≤ 7 days"
        )
    sparse = config.model_copy(update={"orders_per_day": config.orders_per_day * backfill_share})
    week = timedelta(days=7)

    def segments() -> Iterator[Event]:
        for k in range(backfill_weeks, 0, -1):
            yield from Marketplace(sparse, seed).events(
                start - k * week, end + backfill_past_end - k * week
            )
        yield from Marketplace(config, seed).events(start, end)

    def counted() -> Iterator[Event]:
        for event in segments():
            counts[event.type] += 1
            if on_event is not None:
                on_event(event)
            yield event

    write_log(path, counted())
    return counts

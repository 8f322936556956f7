"""Write a historical event log from the simulator: the training data and the file to replay."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
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
) -> Counter[str]:
    """Simulate ``[start, end)`` into the log at ``path``; return the events by type."""
    counts: Counter[str] = Counter()

    def counted() -> Iterator[Event]:
        for event in Marketplace(config, seed).events(start, end):
            counts[event.type] += 1
            if on_event is not None:
                on_event(event)
            yield event

    write_log(path, counted())
    return counts

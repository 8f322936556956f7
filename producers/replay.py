"""Replay a recorded event log onto the topics, keeping its order and its rhythm.

Events go out in file order. With a ``speed``, the wall-clock gap before each event is its
event-time gap from the first event divided by ``speed`` (60 plays an hour in a minute); with
``None`` they go out as fast as the producer takes them. Rejected lines are counted and the
first few kept with their line numbers and reasons; they never stop the replay.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from producers.pacing import wait_until
from stream_features.contract import Event, event_time
from stream_features.event_log import LogLine

__all__ = ["Rejection", "ReplayReport", "replay"]


@dataclass(frozen=True)
class Rejection:
    line_no: int
    reason: str


@dataclass
class ReplayReport:
    """What a replay did: counts, the first rejections and the event time it covered."""

    sent: int = 0
    rejected: int = 0
    rejections: list[Rejection] = field(default_factory=list)
    by_type: Counter[str] = field(default_factory=Counter)
    first_event_at: datetime | None = None  # earliest event time seen
    last_event_at: datetime | None = None  # latest event time seen
    wall_s: float = 0.0

    @property
    def span_s(self) -> float:
        if self.first_event_at is None or self.last_event_at is None:
            return 0.0
        return (self.last_event_at - self.first_event_at).total_seconds()


def replay(
    lines: Iterable[LogLine],
    publish: Callable[[Event], None],
    speed: float | None,
    wait: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    keep_rejections: int = 20,
    on_line: Callable[[LogLine], None] | None = None,
    report: ReplayReport | None = None,
) -> ReplayReport:
    """Publish every valid event of ``lines`` in order, paced by ``speed`` (None: no pacing).

    ``report`` is filled as the replay goes, so a caller interrupted half-way (Ctrl-C) still
    has what was sent."""
    if speed is not None and speed <= 0:
        raise ValueError(f"speed must be positive, got {speed}")
    report = ReplayReport() if report is None else report
    wall0 = clock()
    first_s: float | None = None
    try:
        for line in lines:
            if on_line is not None:
                on_line(line)
            if line.event is None:
                report.rejected += 1
                if len(report.rejections) < keep_rejections:
                    report.rejections.append(Rejection(line.line_no, str(line.error)))
                continue
            at = event_time(line.event)
            stamp = at.timestamp()
            if speed is not None:
                if first_s is None:
                    first_s = stamp
                wait_until(wall0 + (stamp - first_s) / speed, clock, wait)
            publish(line.event)
            report.sent += 1
            report.by_type[line.event.type] += 1
            if report.first_event_at is None or at < report.first_event_at:
                report.first_event_at = at
            if report.last_event_at is None or at > report.last_event_at:
                report.last_event_at = at
    finally:
        report.wall_s = clock() - wall0
    return report

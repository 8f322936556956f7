"""Publish a simulated stream live: each event goes out when the wall clock reaches its time.

With ``lead_s=0`` the stream is what a marketplace would send now (event time = wall-clock
time; events stamped in the past, such as a warm-up, go out at once). A positive ``lead_s``
lets event time run up to that far ahead of the clock: events go out as fast as the producer
takes them until the lead is reached, then at the marketplace's pace, so they never get
further into the future than consumers accept (``ETA_MAX_FUTURE_SKEW_S``).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from producers.pacing import wait_until
from stream_features.contract import Event, event_time

__all__ = ["LiveReport", "publish_live"]


@dataclass
class LiveReport:
    sent: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    wall_s: float = 0.0
    event_span_s: float = 0.0  # event time from the first event to the last
    lead_s: float = 0.0  # how far the last event's time was ahead of the wall clock
    live_orders: int = 0  # orders stamped at or after the run's start (not the warm-up)
    live_wall_s: float = 0.0  # wall time since the first of those went out

    @property
    def orders_per_s(self) -> float:
        """Orders per wall-clock second once live (the warm-up burst left out)."""
        return self.live_orders / self.live_wall_s if self.live_wall_s > 0 else 0.0


def publish_live(
    events: Iterable[Event],
    publish: Callable[[Event], None],
    lead_s: float = 0.0,
    max_wall_s: float | None = None,
    wait: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
    on_event: Callable[[Event], None] | None = None,
) -> LiveReport:
    """Publish ``events`` in order; stop early once ``max_wall_s`` of wall time has passed."""
    report = LiveReport()
    wall0 = clock()
    first: float | None = None
    live_since: float | None = None
    stamp = wall0
    for event in events:
        stamp = event_time(event).timestamp()
        if first is None:
            first = stamp
        wait_until(stamp - lead_s, clock, wait)
        if max_wall_s is not None and clock() - wall0 >= max_wall_s:
            break
        publish(event)
        report.sent += 1
        report.by_type[event.type] += 1
        if stamp >= wall0:
            if live_since is None:
                live_since = clock()
            report.live_orders += event.type == "OrderCreated"
        report.event_span_s = stamp - first
        if on_event is not None:
            on_event(event)
    now = clock()
    report.wall_s = now - wall0
    report.live_wall_s = now - live_since if live_since is not None else 0.0
    report.lead_s = stamp - now
    return report

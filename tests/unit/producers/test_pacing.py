"""Pacing of live publishing and replay, on a fake clock: when each event goes out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from producers.live import publish_live
from producers.replay import replay
from stream_features.contract import Event, MarketSupplySnapshot, encode
from stream_features.event_log import LogLine

T0 = datetime(2026, 3, 6, 12, tzinfo=UTC)


class FakeClock:
    """A clock that only moves when someone waits on it."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> None:
        self.now += seconds


def _snapshots(offsets_s: list[float]) -> list[Event]:
    return [
        MarketSupplySnapshot(
            market_id="m1",
            at=T0 + timedelta(seconds=s),
            onshift_dashers=5,
            busy_dashers=1,
            outstanding_orders=1,
        )
        for s in offsets_s
    ]


class Recorder:
    """A publish callback that notes each event and the clock's time when it went out."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock, self.sent, self.times = clock, list[Event](), list[float]()

    def __call__(self, event: Event) -> None:
        self.times.append(self.clock())
        self.sent.append(event)

    def offsets(self, origin: float) -> list[float]:
        return [round(t - origin, 6) for t in self.times]


def test_live_events_go_out_when_the_clock_reaches_them() -> None:
    clock = FakeClock(T0.timestamp())
    events = _snapshots([-30, 0, 10, 25])  # the first is a warm-up event: at once
    publish = Recorder(clock)

    report = publish_live(events, publish, lead_s=0.0, wait=clock.wait, clock=clock)

    assert publish.sent == events
    assert publish.offsets(T0.timestamp()) == [0, 0, 10, 25]
    assert report.sent == 4 and report.event_span_s == 55
    assert report.lead_s == 0


def test_a_lead_lets_event_time_run_ahead_but_no_further() -> None:
    clock = FakeClock(T0.timestamp())
    events = _snapshots([0, 50, 100, 200, 300])
    publish = Recorder(clock)

    publish_live(events, publish, lead_s=100.0, wait=clock.wait, clock=clock)

    assert publish.offsets(T0.timestamp()) == [0, 0, 0, 100, 200]


def test_max_wall_stops_the_stream() -> None:
    clock = FakeClock(T0.timestamp())
    events = _snapshots([float(s) for s in range(0, 100, 10)])
    publish = Recorder(clock)

    publish_live(events, publish, max_wall_s=35, wait=clock.wait, clock=clock)

    assert len(publish.sent) == 4  # 0, 10, 20, 30: the one at 40 s is past the limit


def test_replay_scales_event_time_gaps_by_speed() -> None:
    clock = FakeClock(1000.0)
    events = _snapshots([0, 60, 60, 600, 30])  # the last one is out of order: no waiting
    lines = [LogLine(i, e, None, encode(e)) for i, e in enumerate(events, start=1)]
    publish = Recorder(clock)

    report = replay(lines, publish, speed=60.0, wait=clock.wait, clock=clock)

    assert publish.sent == events
    assert publish.offsets(1000.0) == [0, 1, 1, 10, 10]
    assert report.span_s == 600
    assert report.first_event_at == T0 and report.by_type["MarketSupplySnapshot"] == 5

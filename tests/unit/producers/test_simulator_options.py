"""The simulator's options for a history that describes the live traffic after it (issue 17.3):
``--steady``, ``--burn-in`` and the sparse backfill weeks of ``eta produce history``."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from producers.config import SimConfig
from producers.history import write_history
from producers.simulator import Marketplace, orders_per_day_for_rate
from stream_features.contract import MarketSupplySnapshot, OrderCreated, event_time
from stream_features.event_log import iter_log

START = datetime(2026, 3, 2, 9, tzinfo=UTC)  # a Monday morning: lunch is ahead
SMALL = {"stores": 200, "markets": 2, "orders_per_day": 20_000.0}


def test_steady_demand_is_flat_over_the_day() -> None:
    m = Marketplace(SimConfig(daily_cycle=False, supply_drift=0.0, **SMALL), seed=1)
    hours = [m.rate(0, int((START + timedelta(hours=h)).timestamp() * 1000), 0) for h in range(24)]
    assert max(hours) == min(hours)
    cycling = Marketplace(SimConfig(**SMALL), seed=1)
    assert len({cycling.rate(0, int((START + timedelta(hours=h)).timestamp() * 1000), 0)
                for h in range(24)}) > 1  # fmt: skip
    assert orders_per_day_for_rate(2.0, START, daily_cycle=False) == 2.0 * 86_400


def test_burn_in_opens_on_a_running_marketplace_and_emits_nothing_before_the_start() -> None:
    end = START + timedelta(minutes=20)
    cold = list(Marketplace(SimConfig(**SMALL), seed=3).events(START, end))
    warm = list(Marketplace(SimConfig(burn_in_s=3 * 3600, **SMALL), seed=3).events(START, end))
    assert min(event_time(e) for e in warm) >= START
    # orders placed during the burn-in are delivered after the start: busy dashers from the
    # first snapshot on, where a cold start has next to none
    first = {
        name: next(e for e in events if isinstance(e, MarketSupplySnapshot))
        for name, events in (("cold", cold), ("warm", warm))
    }
    assert first["warm"].busy_dashers > 5 * max(first["cold"].busy_dashers, 1)
    delivered_first = sum(e.type == "OrderDelivered" for e in warm[: len(warm) // 4])
    assert delivered_first > sum(e.type == "OrderDelivered" for e in cold[: len(cold) // 4])


def test_backfill_weeks_repeat_the_clock_hours_sparsely_before_the_history(
    tmp_path: Path,
) -> None:
    out = tmp_path / "h.jsonl"
    end = START + timedelta(hours=1)
    counts = write_history(out, START, end, SimConfig(**SMALL), 0, None, 2, 0.25)
    orders = [line.event for line in iter_log(out) if isinstance(line.event, OrderCreated)]
    assert counts["OrderCreated"] == len(orders)
    by_week = Counter((START - o.created_at) // timedelta(days=7) + 1 for o in orders
                      if o.created_at < START)  # fmt: skip
    recent = sum(o.created_at >= START for o in orders)
    assert set(by_week) == {1, 2}  # one and two weeks before, nothing else
    for week in (1, 2):
        assert 0.15 * recent < by_week[week] < 0.4 * recent  # a quarter of the rate
    hours = {o.created_at.hour for o in orders}
    assert hours <= {START.hour, end.hour}  # the same clock hours
    assert len({o.order_id for o in orders}) == len(orders)  # ids never repeat across weeks


def test_backfill_past_end_covers_the_clock_hours_after_the_history(tmp_path: Path) -> None:
    """Live traffic hours after a history reads hour-of-week batch keys of its own hours: the
    backfill weeks run on past the history's end so those keys hold data (the demo, #22.8)."""
    out = tmp_path / "h.jsonl"
    end = START + timedelta(hours=1)
    past = timedelta(hours=2)
    write_history(out, START, end, SimConfig(**SMALL), 0, None, 1, 0.25, past)
    orders = [line.event for line in iter_log(out) if isinstance(line.event, OrderCreated)]
    backfill = [o for o in orders if o.created_at < START]
    assert {o.created_at.hour for o in backfill} == {START.hour, START.hour + 1, START.hour + 2}
    assert max(o.created_at for o in backfill) < end + past - timedelta(days=7)
    assert max(o.created_at for o in orders) < end  # the history itself stops at its end
    assert [o.created_at for o in orders] == sorted(o.created_at for o in orders)

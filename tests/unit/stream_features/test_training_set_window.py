"""``build_training_set``'s row window: ``since`` and ``until`` pick the rows, every event
still builds the state (the demo leaves out a history's last hours, whose labels are censored)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

from producers.config import SimConfig
from producers.simulator import Marketplace
from stream_features.point_in_time import build_training_set

START = datetime(2026, 3, 2, 9, tzinfo=UTC)


def test_until_keeps_only_orders_created_before_it_with_the_same_features() -> None:
    config = SimConfig(stores=40, markets=1, orders_per_day=20_000.0)
    events = list(Marketplace(config, seed=3).events(START, START + timedelta(hours=2)))
    since, until = START + timedelta(minutes=30), START + timedelta(minutes=90)
    whole = build_training_set(events)
    window = build_training_set(events, since=since, until=until)
    assert window.height > 0
    assert window["created_at"].min() >= since and window["created_at"].max() < until
    expected = whole.filter((pl.col("created_at") >= since) & (pl.col("created_at") < until))
    assert window.equals(expected)

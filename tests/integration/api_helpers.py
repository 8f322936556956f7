"""Helpers of the HTTP API's and batch job's integration tests: a model, some state, an app.

Everything talks to the session's real Redis under the test's own key prefix.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
import redis

from predictor.api.wiring import build_app
from predictor.batch_scoring.profiles import orders_frame, store_profiles
from stream_features.contract import Event, OrderCreated, event_time
from stream_features.redis_windows import RedisFeatureSource
from stream_features.settings import Settings
from tests.api_fakes import AppClient
from tests.feature_events import delivered, order
from tests.integration.worker_models import registered_model

__all__ = ["api_client", "model_settings", "seed_state", "seeded_profiles"]


def model_settings(settings: Settings, tmp_path: Path) -> Settings:
    """A small model registered and promoted, scored by LightGBM (no compile in tests)."""
    return registered_model(settings, tmp_path).model_copy(update={"scoring": "lightgbm"})


def seed_state(
    client: redis.Redis, key_prefix: str, now: datetime, stores: int = 6
) -> list[OrderCreated]:
    """An hour of orders and deliveries for ``stores`` stores in two markets, up to ``now``;
    applied as the stream applies them. Returns the orders."""
    events: list[Event] = []
    orders: list[OrderCreated] = []
    for i in range(stores * 12):
        store = i % stores
        at = now - timedelta(minutes=60) + timedelta(seconds=50 * i * 6 / stores)
        o = order(f"seed-{i}", at, store=f"s{store}", market=f"m{store % 2}")
        changes = {"total_items": 2 + i % 5, "subtotal": 1000 + 150 * (i % 9)}
        o = OrderCreated.model_validate({**o.model_dump(), **changes})
        orders.append(o)
        events.append(o)
        if i % 3 == 0:
            events.append(delivered(o, at + timedelta(minutes=25)))
    events = sorted((e for e in events if _time(e) <= now), key=_time)
    source = RedisFeatureSource(client, key_prefix=key_prefix)
    for i in range(0, len(events), 50):
        source.update_and_read(events[i : i + 50])
    return orders


def _time(event: Event) -> datetime:
    return event_time(event)


def seeded_profiles(orders: list[OrderCreated], as_of: datetime) -> pl.DataFrame:
    return store_profiles(orders_frame(orders), as_of + timedelta(seconds=1))


@contextmanager
def api_client(settings: Settings, key_prefix: str) -> Iterator[AppClient]:
    """The app ``eta serve`` builds from ``settings``, over the test's prefix; the model
    handle and client are closed when the block ends (the app's shutdown)."""
    with AppClient(build_app(settings, key_prefix)) as client:
        yield client

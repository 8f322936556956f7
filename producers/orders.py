"""An hour of order arrivals at once: when, where, what, and the dice each order will need.

Drawing a whole hour in vectorised numpy keeps the event loop in ``simulator`` to plain Python
arithmetic on lists. Everything an order will meet later (its prep-time noise, how far its
dasher is, whether it becomes an outlier) is drawn here, so the simulation is deterministic for
a seed however the state evolves.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from producers.world import World

__all__ = ["Arrivals", "draw_arrivals"]

# order_protocol (1..7) shares, and the estimate the platform shows for placing the order
_PROTOCOL_P = np.array([0.28, 0.12, 0.27, 0.10, 0.15, 0.05, 0.03])
_PLACE_ESTIMATE_S = np.array([0, 251, 446, 251, 446, 251, 251, 446])
_ROAD_FACTOR, _FREE_FLOW_KMH = 1.3, 28.0


@dataclass
class Arrivals:
    """Orders of one chunk in time order; column lists indexed by order number in the chunk."""

    time_ms: list[int]
    market: list[int]
    store: list[int]
    total_items: list[int]
    num_distinct: list[int]
    min_price: list[int]
    max_price: list[int]
    subtotal: list[int]
    protocol: list[int]
    est_place_s: list[int]
    est_drive_s: list[int]
    consumer_lat: list[float]
    consumer_lon: list[float]
    # what happens later, drawn now
    place_s: list[float]  # time for the store to take the order
    prep_base_s: list[float]  # prep before any load effect
    dispatch_s: list[float]
    to_store_s: list[float]  # dasher's way to the store before the scarcity effect
    handoff_s: list[float]
    drive_noise: list[float]
    dropoff_s: list[float]
    outlier_mult: list[float]  # 1.0 for ordinary orders

    def __len__(self) -> int:
        return len(self.time_ms)


def _poisson_minutes(
    rng: np.random.Generator, rate: Callable[[int, int], float], markets: int, start_ms: int, n: int
) -> np.ndarray:
    rates = np.array(
        [[rate(m, start_ms + i * 60_000 + 30_000) * 60.0 for i in range(n)] for m in range(markets)]
    )
    return rng.poisson(rates)


def draw_arrivals(
    rng: np.random.Generator,
    world: World,
    rate: Callable[[int, int], float],
    start_ms: int,
    minutes: int,
    outlier_share: float,
) -> Arrivals:
    """Orders created in ``[start_ms, start_ms + minutes)``; ``rate(market, ms)`` is orders/s."""
    counts = _poisson_minutes(rng, rate, len(world.markets), start_ms, minutes)
    times, markets, stores = [], [], []
    for m, per_minute in enumerate(counts):
        k = int(per_minute.sum())
        minute = np.repeat(np.arange(minutes), per_minute)
        times.append(start_ms + minute * 60_000 + rng.integers(0, 60_000, k))
        markets.append(np.full(k, m))
        pick = np.searchsorted(world.store_weights[m], rng.random(k), side="right")
        stores.append(world.store_index[m][np.minimum(pick, len(world.store_index[m]) - 1)])
    t = np.concatenate(times)
    order = np.argsort(t, kind="stable")
    t, mk, st = t[order], np.concatenate(markets)[order], np.concatenate(stores)[order]
    n = len(t)

    col = world.columns
    mean_items, price, base_prep = col["items"][st], col["price"][st], col["prep_s"][st]
    lat, lon = col["lat"][st], col["lon"][st]

    items = 1 + rng.poisson(np.maximum(mean_items - 1, 0.1))
    distinct = 1 + rng.binomial(items - 1, 0.6)
    p_min = np.maximum(50, np.round(price * rng.lognormal(-0.3, 0.25, n))).astype(np.int64)
    p_max = np.where(distinct > 1, np.round(p_min * (1 + rng.lognormal(-0.2, 0.4, n))), p_min)
    p_max = p_max.astype(np.int64)
    subtotal = np.where(distinct > 1, np.round(items * (p_min + p_max) / 2), items * p_min)
    protocol = rng.choice(7, n, p=_PROTOCOL_P) + 1
    est_place = _PLACE_ESTIMATE_S[protocol]

    dist_km = np.clip(rng.lognormal(math.log(2.8), 0.5, n), 0.3, 20.0)
    bearing = rng.random(n) * 2 * math.pi
    c_lat = lat + dist_km * np.cos(bearing) / 111.0
    c_lon = lon + dist_km * np.sin(bearing) / (111.0 * np.cos(np.radians(lat)))
    est_drive = np.round(60 + dist_km * _ROAD_FACTOR / _FREE_FLOW_KMH * 3600)

    size = 1 + 0.05 * np.minimum(items - 1, 10)
    outlier = rng.random(n) < outlier_share
    return Arrivals(
        time_ms=t.tolist(),
        market=mk.tolist(),
        store=st.tolist(),
        total_items=items.tolist(),
        num_distinct=distinct.tolist(),
        min_price=p_min.tolist(),
        max_price=p_max.tolist(),
        subtotal=subtotal.astype(np.int64).tolist(),
        protocol=protocol.tolist(),
        est_place_s=est_place.tolist(),
        est_drive_s=est_drive.astype(np.int64).tolist(),
        consumer_lat=np.round(c_lat, 6).tolist(),
        consumer_lon=np.round(c_lon, 6).tolist(),
        place_s=(est_place * rng.lognormal(0.0, 0.3, n)).tolist(),
        prep_base_s=(base_prep * size * rng.lognormal(0.0, 0.25, n)).tolist(),
        dispatch_s=rng.uniform(20, 90, n).tolist(),
        to_store_s=rng.lognormal(math.log(300), 0.45, n).tolist(),
        handoff_s=rng.uniform(60, 240, n).tolist(),
        drive_noise=rng.lognormal(0.0, 0.18, n).tolist(),
        dropoff_s=rng.uniform(60, 300, n).tolist(),
        outlier_mult=np.where(outlier, rng.uniform(3, 10, n), 1.0).tolist(),
    )

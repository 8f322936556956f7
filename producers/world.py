"""The simulated world: markets, stores, and the daily curves of demand and traffic.

Everything here depends on the seed and the config only (never on the simulated period), so a
history and a later live stream from the same seed share the same stores. Local time is UTC in
every market: the hour of day on the wire is the hour that drives demand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np

from producers.config import SimConfig

__all__ = [
    "CATEGORIES",
    "Market",
    "Store",
    "World",
    "build_world",
    "demand_shape",
    "mean_demand_shape",
    "traffic_factor",
]

# category -> (median prep seconds, typical item price in cents, mean items per order)
CATEGORIES: dict[str, tuple[float, float, float]] = {
    "pizza": (900, 1400, 2.2),
    "burger": (480, 1000, 2.8),
    "mexican": (600, 1000, 2.6),
    "chinese": (720, 1200, 3.0),
    "japanese": (900, 1600, 2.8),
    "indian": (900, 1400, 3.0),
    "thai": (780, 1300, 2.6),
    "italian": (1020, 1700, 2.4),
    "american": (720, 1300, 2.6),
    "breakfast": (540, 900, 2.4),
    "dessert": (300, 700, 2.0),
    "sandwich": (360, 900, 2.2),
    "salad": (300, 1200, 1.6),
    "coffee": (240, 500, 2.0),
    "grocery": (1200, 500, 8.0),
}
_CATEGORY_WEIGHTS = np.array([8, 10, 8, 7, 5, 5, 5, 5, 9, 4, 4, 6, 4, 4, 3], dtype=float)

_CITY_CENTERS = (
    (37.77, -122.42),
    (40.73, -73.99),
    (41.88, -87.63),
    (30.27, -97.74),
    (47.61, -122.33),
    (33.75, -84.39),
    (34.05, -118.24),
    (39.74, -104.99),
)


@dataclass(frozen=True)
class Market:
    market_id: str
    share: float  # of all demand
    lat: float
    lon: float


@dataclass(frozen=True)
class Store:
    store_id: str
    market: int  # index into World.markets
    category: str
    base_prep_s: float
    price_cents: float
    mean_items: float
    lat: float
    lon: float


@dataclass(frozen=True)
class World:
    markets: tuple[Market, ...]
    stores: tuple[Store, ...]
    store_weights: tuple[np.ndarray, ...]  # per market: cumulative popularity of its stores
    store_index: tuple[np.ndarray, ...]  # per market: indices into `stores`
    columns: dict[str, np.ndarray]  # per store, for vectorised draws (prep_s, price, items...)


def build_world(config: SimConfig, seed: int) -> World:
    """Markets with demand shares and stores with skewed popularity (a few very busy ones)."""
    rng = np.random.default_rng([seed, 0])
    shares = rng.lognormal(0.0, 0.4, config.markets)
    shares /= shares.sum()
    markets = []
    for i in range(config.markets):
        lat, lon = _CITY_CENTERS[i % len(_CITY_CENTERS)]
        if i >= len(_CITY_CENTERS):  # more markets than cities: neighbours of the same one
            lat, lon = lat + 0.5 * (i // len(_CITY_CENTERS)), lon + 0.5
        markets.append(Market(f"m{i + 1}", float(shares[i]), lat, lon))

    n = config.stores
    # every market gets at least one store, the rest follow demand
    rest = rng.choice(config.markets, max(n - config.markets, 0), p=shares)
    market_of = np.concatenate([np.arange(min(n, config.markets)), rest])
    names = list(CATEGORIES)
    category = rng.choice(len(names), n, p=_CATEGORY_WEIGHTS / _CATEGORY_WEIGHTS.sum())
    prep_factor = rng.lognormal(0.0, 0.3, n)
    price_factor = rng.lognormal(0.0, 0.25, n)
    popularity = rng.lognormal(0.0, 1.1, n)
    radius_km = 6.0 * np.sqrt(rng.random(n))
    bearing = rng.random(n) * 2 * math.pi
    stores = []
    for i in range(n):
        m = markets[int(market_of[i])]
        prep, price, items = CATEGORIES[names[int(category[i])]]
        dlat = radius_km[i] * math.cos(bearing[i]) / 111.0
        dlon = radius_km[i] * math.sin(bearing[i]) / (111.0 * math.cos(math.radians(m.lat)))
        stores.append(
            Store(
                store_id=f"s{i:05d}",
                market=int(market_of[i]),
                category=names[int(category[i])],
                base_prep_s=prep * float(prep_factor[i]),
                price_cents=price * float(price_factor[i]),
                mean_items=items,
                lat=round(m.lat + dlat, 6),
                lon=round(m.lon + dlon, 6),
            )
        )
    index = tuple(np.flatnonzero(market_of == m) for m in range(config.markets))
    weights = tuple(np.cumsum(popularity[idx]) / popularity[idx].sum() for idx in index)
    columns = {
        "prep_s": np.array([s.base_prep_s for s in stores]),
        "price": np.array([s.price_cents for s in stores]),
        "items": np.array([s.mean_items for s in stores]),
        "lat": np.array([s.lat for s in stores]),
        "lon": np.array([s.lon for s in stores]),
    }
    return World(tuple(markets), tuple(stores), weights, index, columns)


def _bump(x: float, center: float, width: float) -> float:
    return math.exp(-0.5 * ((x - center) / width) ** 2)


def demand_shape(hour: float, weekday: int) -> float:
    """Relative order intensity at ``hour`` (0-24, UTC) on ``weekday`` (Monday=0).

    Lunch and dinner peaks over a night floor; weekends peak later and higher.

    >>> demand_shape(12.3, 2) > demand_shape(15.5, 2) > demand_shape(4.0, 2)
    True
    >>> demand_shape(19.0, 5) > demand_shape(19.0, 2)
    True
    """
    if weekday >= 5:
        return (
            0.08
            + 0.25 * _bump(hour, 10.0, 1.2)
            + 1.0 * _bump(hour, 12.8, 1.4)
            + 1.6 * _bump(hour, 18.6, 1.5)
            + 0.3 * _bump(hour, 22.5, 1.2)
        )
    return (
        0.06
        + 1.0 * _bump(hour, 12.2, 0.9)
        + 1.3 * _bump(hour, 18.8, 1.3)
        + 0.15 * _bump(hour, 22.5, 1.2)
    )


@cache
def mean_demand_shape() -> float:
    """``demand_shape`` averaged over a week (per minute), the unit of ``orders_per_day``."""
    total = sum(demand_shape(m / 60.0, d) for d in range(7) for m in range(1440))
    return total / (7 * 1440)


def traffic_factor(hour: float, weekday: int) -> float:
    """How much slower than free-flow driving is at this hour (rush hours on weekdays).

    >>> traffic_factor(17.8, 1) > traffic_factor(17.8, 6) > traffic_factor(3.0, 1)
    True
    """
    if weekday >= 5:
        return 1.0 + 0.15 * _bump(hour, 14.0, 3.0)
    return 1.0 + 0.3 * _bump(hour, 8.5, 1.0) + 0.4 * _bump(hour, 17.8, 1.3)

"""The simulator's knobs: the marketplace's size, its dynamics and the shocks for drift demos."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["Shock", "ShockKind", "SimConfig", "parse_shock"]

ShockKind = Literal["dasher_shortage", "demand_surge"]


class Shock(BaseModel):
    """From ``start_offset_s`` after the simulation's start, one market changes.

    ``dasher_shortage`` multiplies the dashers the market can put on shift by ``factor`` (0.5
    halves supply); ``demand_surge`` multiplies its order rate by ``factor``. It lasts
    ``duration_s`` seconds, or to the end when that is None.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    market_id: str
    kind: ShockKind
    start_offset_s: float = Field(ge=0)
    factor: float = Field(gt=0, le=100)
    duration_s: float | None = Field(None, gt=0)

    def active(self, offset_s: float) -> bool:
        """Whether the shock holds ``offset_s`` seconds after the start.

        >>> Shock(market_id="m1", kind="demand_surge", start_offset_s=60, factor=2).active(59)
        False
        """
        if offset_s < self.start_offset_s:
            return False
        return self.duration_s is None or offset_s < self.start_offset_s + self.duration_s


def parse_shock(text: str) -> Shock:
    """``MARKET:KIND:START_OFFSET_S:FACTOR[:DURATION_S]`` as typed on the command line.

    >>> parse_shock("m2:dasher_shortage:3600:0.5").factor
    0.5
    """
    parts = text.split(":")
    if len(parts) not in (4, 5):
        raise ValueError(
            f"{text!r}: a shock is MARKET:KIND:START_OFFSET_S:FACTOR[:DURATION_S], "
            "e.g. m2:dasher_shortage:3600:0.5"
        )
    names = ("market_id", "kind", "start_offset_s", "factor", "duration_s")
    return Shock.model_validate(dict(zip(names, parts, strict=False)))


class SimConfig(BaseModel):
    """The marketplace: its size, how busy it is and how its durations are made.

    Defaults give about 15k orders a day over 6 markets and 2,000 stores, i.e. a week of
    history with ~100k orders.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    markets: int = Field(6, ge=1, le=200)
    stores: int = Field(2000, ge=1, le=1_000_000)
    orders_per_day: float = Field(
        15_000.0, gt=0, le=1e9, description="all markets, averaged over a week"
    )
    daily_cycle: bool = Field(
        True,
        description="demand follows the daily and weekly curve (lunch and dinner peaks); "
        "False: a flat rate at the week's mean, so any hour looks like any other",
    )
    supply_drift: float = Field(
        0.2,
        ge=0,
        le=2,
        description="hourly step of the supply's random drift (log scale; some hours dashers "
        "are scarce); 0: supply follows demand alone",
    )
    burn_in_s: int = Field(
        0,
        ge=0,
        le=7 * 86400,
        description="simulated before the start and not emitted, so the stream opens on a "
        "running marketplace (queues, busy dashers, orders on their way), not an empty one",
    )
    snapshot_interval_s: int = Field(60, ge=1, le=3600)
    dasher_events: bool = Field(True, description="emit shift_start/shift_end DasherEvents")
    locations: bool = Field(True, description="store and consumer lat/lon on each order")
    outlier_share: float = Field(0.01, ge=0, le=0.5, description="orders taking 3-10x as long")
    store_load_window_s: int = Field(1200, ge=60, description="recent orders that slow a store")
    store_load_coef: float = Field(0.2, ge=0, description="prep time +x per recent order")
    store_load_cap: int = Field(20, ge=1, description="recent orders beyond this add nothing")
    scarcity_coef: float = Field(
        1.5, ge=0, description="travel to the store grows by x * busy_ratio^2"
    )
    supply_ratio: float = Field(
        1.1, gt=0, description="dashers put on shift per dasher the lagged demand keeps busy"
    )
    supply_lag_s: int = Field(1200, ge=0, description="how late supply follows demand")
    supply_step: float = Field(0.2, gt=0, le=1, description="share of the gap closed per tick")
    backlog_response: float = Field(
        0.3, ge=0, description="extra dashers per order waiting for one (surge pay)"
    )
    max_dashers_per_market: int = Field(500_000, ge=1, le=1_000_000)
    shocks: tuple[Shock, ...] = ()

    @model_validator(mode="after")
    def _shocks_hit_markets(self) -> SimConfig:
        known = {f"m{i + 1}" for i in range(self.markets)}
        for shock in self.shocks:
            if shock.market_id not in known:
                raise ValueError(
                    f"shock market {shock.market_id!r} is not one of m1..m{self.markets}"
                )
        return self

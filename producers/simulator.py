"""A marketplace simulator: a causally consistent event stream whose durations depend on state.

Orders arrive as a Poisson process following the daily demand curve of their market. Each order
waits for its store (prep time grows with the orders the store took in the last
``store_load_window_s``) and for a dasher: a free one is assigned at once, and when every dasher
on shift is busy the order joins the market's queue, so delivery times rise with scarcity.
Dashers come on and off shift following demand ``supply_lag_s`` late, which opens queues at the
start of each peak. Drive time follows distance and the hour's traffic; ``outlier_share`` of the
orders take 3-10x as long. Future events (pickups, deliveries, dashers freed) wait in a heap, so
the stream comes out in event-time order.

Every ``snapshot_interval_s`` each market publishes a ``MarketSupplySnapshot`` that equals the
state after every event before it in the stream: ``outstanding_orders`` is exactly the market's
OrderCreated minus OrderDelivered so far, and ``onshift_dashers`` moves only by the shift events
in between. Orders still open at ``end`` have no OrderDelivered in the stream.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np

from producers.config import SimConfig
from producers.orders import Arrivals, draw_arrivals
from producers.world import (
    World,
    build_world,
    demand_shape,
    mean_demand_shape,
    traffic_factor,
)
from stream_features.contract import (
    DasherEvent,
    Event,
    MarketSupplySnapshot,
    OrderCreated,
    OrderDelivered,
    event_time,
    to_ms,
)

__all__ = ["Marketplace", "clock_of", "orders_per_day_for_rate"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HOUR_MS = 3_600_000
_CHUNK_ORDERS = 20_000  # about how many orders to draw at once (a peak minute's worth or more)
_FREE, _DELIVER, _SHIFT_START, _SHIFT_END = range(4)
_BUSY_PRIOR_S = 2000.0  # about what an order keeps a dasher busy in the default world
_MOOD_KEEP = 0.7  # hourly AR(1) of the supply's log drift (its step is SimConfig.supply_drift)
ShiftKind = Literal["shift_start", "shift_end"]


def _when(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def clock_of(ms: int) -> tuple[float, int]:
    """(hour of day as a float, weekday with Monday=0) of an epoch-ms instant, in UTC.

    >>> clock_of(to_ms(datetime(2026, 3, 2, 12, 30, tzinfo=UTC)))  # a Monday
    (12.5, 0)
    """
    day, in_day = divmod(ms, 86_400_000)
    return in_day / 3_600_000, (day + 3) % 7


def orders_per_day_for_rate(rate_per_s: float, at: datetime, daily_cycle: bool = True) -> float:
    """The ``orders_per_day`` that makes the whole marketplace take ``rate_per_s`` at ``at``.

    >>> lunch, night = (datetime(2026, 3, 2, h, tzinfo=UTC) for h in (12, 4))
    >>> orders_per_day_for_rate(1.0, lunch) < 86_400 < orders_per_day_for_rate(1.0, night)
    True
    >>> orders_per_day_for_rate(1.0, night, daily_cycle=False)
    86400.0
    """
    if not daily_cycle:
        return rate_per_s * 86_400
    hour, weekday = clock_of(to_ms(at))
    return rate_per_s * 86_400 * mean_demand_shape() / demand_shape(hour, weekday)


@dataclass
class _MarketState:
    market_id: str
    dice: random.Random
    onshift: int = 0
    busy: int = 0
    pending_end: int = 0  # busy dashers who end their shift when freed
    outstanding: int = 0
    queue: deque[tuple[Any, ...]] = field(default_factory=deque)
    on_ids: list[int] = field(default_factory=list)
    off_ids: deque[int] = field(default_factory=deque)
    next_id: int = 0
    busy_time_s: float = _BUSY_PRIOR_S  # moving mean of how long an order keeps a dasher
    mood: float = 0.0  # log of the supply's random drift (some hours dashers are scarce)


class Marketplace:
    """A simulated marketplace; ``events(start, end)`` is deterministic for (config, seed)."""

    def __init__(self, config: SimConfig | None = None, seed: int = 0) -> None:
        self.config = config or SimConfig()
        self.seed = seed
        self.world: World = build_world(self.config, seed)
        per_s = self.config.orders_per_day / 86_400
        self._unit_rate = per_s / mean_demand_shape() if self.config.daily_cycle else per_s

    def rate(self, market: int, ms: int, start_ms: int, surges: bool = True) -> float:
        """Orders per second in ``market`` at ``ms`` (``start_ms`` anchors the shocks)."""
        shape = demand_shape(*clock_of(ms)) if self.config.daily_cycle else 1.0
        value = self._unit_rate * self.world.markets[market].share * shape
        if not surges:
            return value
        return value * self.shock_factor(market, "demand_surge", (ms - start_ms) / 1000)

    def shock_factor(self, market: int, kind: str, offset_s: float) -> float:
        factor = 1.0
        market_id = self.world.markets[market].market_id
        for shock in self.config.shocks:
            if shock.market_id == market_id and shock.kind == kind and shock.active(offset_s):
                factor *= shock.factor
        return factor

    def events(self, start: datetime, end: datetime) -> Iterator[Event]:
        """Every event with event time in ``[start, end)``, in non-decreasing event time."""
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("start and end must be timezone-aware")
        if end <= start:
            raise ValueError(f"end {end.isoformat()} is not after start {start.isoformat()}")
        start_ms = to_ms(start)
        run = _Run(self, start_ms - self.config.burn_in_s * 1000, to_ms(end), anchor_ms=start_ms)
        if not self.config.burn_in_s:
            return run.events()
        return (e for e in run.events() if to_ms(event_time(e)) >= start_ms)


class _Run:
    """One pass of the simulation over a period: the heap, the markets' state, the dice."""

    def __init__(
        self, market: Marketplace, start_ms: int, end_ms: int, anchor_ms: int | None = None
    ) -> None:
        self.m, self.cfg, self.world = market, market.config, market.world
        self.start_ms, self.end_ms = start_ms, end_ms
        self.anchor_ms = start_ms if anchor_ms is None else anchor_ms  # shocks count from here
        self.rng = np.random.default_rng([market.seed, 1, start_ms])
        self.heap: list[tuple[Any, ...]] = []
        self.seq = 0
        self.order_no = 0
        self.tag = f"o{market.seed}-{start_ms // 1000}-"
        peak_per_min = self.cfg.orders_per_day / 1440 * 3
        self.chunk_min = int(max(1, min(60, _CHUNK_ORDERS // max(peak_per_min, 1))))
        self.recent: dict[int, deque[int]] = {}
        # each market rolls its own dice, so a shock in one leaves the others' streams alone
        self.states = [
            _MarketState(m.market_id, dice=random.Random(int(self.rng.integers(2**62))))
            for m in self.world.markets
        ]
        for i, state in enumerate(self.states):  # start in a steady state: no burst of shifts
            state.mood = state.dice.gauss(0.0, self.cfg.supply_drift / math.sqrt(1 - _MOOD_KEEP**2))
            state.onshift = self._target(i, start_ms)
            state.on_ids = list(range(state.onshift))
            state.next_id = state.onshift

    def _push(self, t_ms: int, kind: int, *payload: Any) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (t_ms, self.seq, kind, *payload))

    # --- supply ---------------------------------------------------------------------------

    def _target(self, market: int, t_ms: int) -> int:
        """Dashers the market wants on shift: lagged demand x time per order, plus backlog.

        Supply plans for the usual demand; a surge reaches it only through the backlog. In a
        shortage the pool itself shrinks, and no surge pay brings the missing dashers back.
        """
        cfg, state = self.cfg, self.states[market]
        lagged = self.m.rate(market, t_ms - cfg.supply_lag_s * 1000, self.anchor_ms, surges=False)
        wanted = cfg.supply_ratio * math.exp(state.mood) * lagged * state.busy_time_s
        shortage = self.m.shock_factor(market, "dasher_shortage", (t_ms - self.anchor_ms) / 1000)
        if shortage < 1:
            wanted *= shortage
        else:
            wanted = shortage * (wanted + cfg.backlog_response * len(state.queue))
        return max(1, min(cfg.max_dashers_per_market, round(wanted)))

    def _plan(self, t_ms: int, tick_ms: int) -> None:
        for i, state in enumerate(self.states):
            target = self._target(i, t_ms)
            gap = target - (state.onshift - state.pending_end)
            if abs(gap) <= 0.03 * target:  # dashers do not come and go over a few percent
                continue
            steps = math.ceil(abs(gap) * self.cfg.supply_step)
            kind = _SHIFT_START if gap > 0 else _SHIFT_END
            for offset in sorted(state.dice.randrange(1, tick_ms) for _ in range(steps)):
                self._push(t_ms + offset, kind, i)

    def _dasher_event(
        self, state: _MarketState, dasher: int, kind: ShiftKind, t_ms: int
    ) -> Event | None:
        if not self.cfg.dasher_events:
            return None
        return DasherEvent(
            dasher_id=f"{state.market_id}-d{dasher}",
            market_id=state.market_id,
            kind=kind,
            at=_when(t_ms),
        )

    def _shift_start(self, state: _MarketState, t_ms: int) -> Event | None:
        if state.pending_end:  # someone about to leave stays on instead
            state.pending_end -= 1
            return None
        state.onshift += 1
        dasher = state.off_ids.popleft() if state.off_ids else state.next_id
        state.next_id = max(state.next_id, dasher + 1)
        state.on_ids.append(dasher)
        if state.queue:
            self._assign(state, state.queue.popleft(), t_ms)
        return self._dasher_event(state, dasher, "shift_start", t_ms)

    def _shift_end(self, state: _MarketState, t_ms: int) -> Event | None:
        if state.onshift - state.busy <= 0:
            state.pending_end += 1
            return None
        return self._leave(state, t_ms)

    def _leave(self, state: _MarketState, t_ms: int) -> Event | None:
        state.onshift -= 1
        dasher = state.on_ids.pop()
        state.off_ids.append(dasher)
        return self._dasher_event(state, dasher, "shift_end", t_ms)

    # --- orders ---------------------------------------------------------------------------

    def _arrive(self, c: Arrivals, i: int, t_ms: int) -> Event:
        cfg, world = self.cfg, self.world
        m, s = c.market[i], c.store[i]
        state, store = self.states[m], world.stores[s]
        recent = self.recent.get(s)
        if recent is None:
            recent = self.recent[s] = deque()
        horizon = t_ms - cfg.store_load_window_s * 1000
        while recent and recent[0] <= horizon:
            recent.popleft()
        load = min(len(recent), cfg.store_load_cap)
        recent.append(t_ms)

        self.order_no += 1
        order_id = f"{self.tag}{self.order_no}"
        prep_s = c.prep_base_s[i] * (1 + cfg.store_load_coef * load)
        ready_ms = t_ms + round(1000 * (c.place_s[i] + prep_s))
        order = (order_id, s, m, t_ms, ready_ms, i, c)
        state.outstanding += 1
        if state.onshift - state.busy > 0:
            self._assign(state, order, t_ms)
        else:
            state.queue.append(order)
        loc: dict[str, float] = {}
        if cfg.locations:
            loc = dict(
                store_lat=store.lat,
                store_lon=store.lon,
                consumer_lat=c.consumer_lat[i],
                consumer_lon=c.consumer_lon[i],
            )
        return OrderCreated(
            order_id=order_id,
            created_at=_when(t_ms),
            market_id=state.market_id,
            store_id=store.store_id,
            store_category=store.category,
            order_protocol=c.protocol[i],
            total_items=c.total_items[i],
            subtotal=c.subtotal[i],
            num_distinct_items=c.num_distinct[i],
            min_item_price=c.min_price[i],
            max_item_price=c.max_price[i],
            estimated_order_place_duration_s=c.est_place_s[i],
            estimated_store_to_consumer_driving_duration_s=c.est_drive_s[i],
            **loc,
        )

    def _assign(self, state: _MarketState, order: tuple[Any, ...], t_ms: int) -> None:
        """A free dasher takes ``order`` at ``t_ms``: schedule the pickup, delivery and release."""
        order_id, s, m, created_ms, ready_ms, i, c = order
        state.busy += 1
        ratio = state.busy / state.onshift
        travel_s = c.dispatch_s[i] + c.to_store_s[i] * (1 + self.cfg.scarcity_coef * ratio * ratio)
        pickup_ms = max(ready_ms, t_ms + round(1000 * travel_s)) + round(1000 * c.handoff_s[i])
        hour, weekday = clock_of(pickup_ms)
        drive_s = c.est_drive_s[i] * traffic_factor(hour, weekday) * c.drive_noise[i]
        done_ms = pickup_ms + round(1000 * (drive_s + c.dropoff_s[i]))
        self._push(done_ms, _FREE, m, done_ms - t_ms)
        # an outlier's extra time is the consumer's (unreachable, wrong address): the dasher
        # is released on time, the order stays open
        delivered_ms = created_ms + round((done_ms - created_ms) * c.outlier_mult[i])
        self._push(delivered_ms, _DELIVER, order_id, s, m, pickup_ms)

    def _free(self, state: _MarketState, busy_ms: int, t_ms: int) -> Event | None:
        state.busy -= 1
        state.busy_time_s += 0.01 * (busy_ms / 1000 - state.busy_time_s)
        if state.pending_end:
            state.pending_end -= 1
            return self._leave(state, t_ms)
        if state.queue:
            self._assign(state, state.queue.popleft(), t_ms)
        return None

    def _deliver(self, payload: tuple[Any, ...], t_ms: int) -> Event:
        order_id, s, m, pickup_ms = payload
        state = self.states[m]
        state.outstanding -= 1
        return OrderDelivered(
            order_id=order_id,
            store_id=self.world.stores[s].store_id,
            market_id=state.market_id,
            delivered_at=_when(t_ms),
            picked_up_at=_when(pickup_ms),
        )

    # --- the loop -------------------------------------------------------------------------

    def _handle(self, item: tuple[Any, ...]) -> Event | None:
        t_ms, _, kind = item[0], item[1], item[2]
        if kind == _FREE:
            return self._free(self.states[item[3]], item[4], t_ms)
        if kind == _DELIVER:
            return self._deliver(item[3:], t_ms)
        if kind == _SHIFT_START:
            return self._shift_start(self.states[item[3]], t_ms)
        return self._shift_end(self.states[item[3]], t_ms)

    def _drift_supply(self) -> None:
        for state in self.states:  # the supply's mood drifts hour by hour
            state.mood = _MOOD_KEEP * state.mood + state.dice.gauss(0.0, self.cfg.supply_drift)

    def _draw(self, chunk_ms: int) -> Arrivals:
        return draw_arrivals(
            self.rng,
            self.world,
            lambda market, ms: self.m.rate(market, ms, self.anchor_ms),
            chunk_ms,
            self.chunk_min,
            self.cfg.outlier_share,
        )

    def events(self) -> Iterator[Event]:
        """Snapshots at each tick, then the tick's events: the heap's merged with arrivals."""
        tick_ms, chunk_ms = self.cfg.snapshot_interval_s * 1000, self.chunk_min * 60_000
        t_ms, next_chunk_ms, next_drift_ms = self.start_ms, self.start_ms, self.start_ms + _HOUR_MS
        heap, arrivals, k = self.heap, self._draw(self.start_ms), 0
        next_chunk_ms += chunk_ms
        while t_ms < self.end_ms:
            at = _when(t_ms)
            for state in self.states:
                yield MarketSupplySnapshot(
                    market_id=state.market_id,
                    at=at,
                    onshift_dashers=state.onshift,
                    busy_dashers=state.busy,
                    outstanding_orders=state.outstanding,
                )
            horizon = min(t_ms + tick_ms, self.end_ms)
            if t_ms >= next_drift_ms:
                self._drift_supply()
                next_drift_ms += _HOUR_MS
            self._plan(t_ms, tick_ms)
            times = arrivals.time_ms
            while True:
                if k == len(times) and next_chunk_ms < horizon:
                    arrivals, k = self._draw(next_chunk_ms), 0
                    times = arrivals.time_ms
                    next_chunk_ms += chunk_ms
                    continue
                arrival_ms = times[k] if k < len(times) else horizon
                if heap and heap[0][0] < horizon and heap[0][0] <= arrival_ms:
                    event = self._handle(heapq.heappop(heap))
                elif arrival_ms < horizon:
                    event = self._arrive(arrivals, k, arrival_ms)
                    k += 1
                else:
                    break
                if event is not None:
                    yield event
            t_ms += tick_ms

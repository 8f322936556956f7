"""The marketplace simulator, judged on the data it generates.

The stream must be valid, ordered and causally consistent, deterministic for a seed, and its
delivery durations must carry the signals the streaming features are there to catch: busy
stores and scarce dashers make orders slower. Statistics are measured on a Friday-to-Monday
run with the default world.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict, deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice, pairwise

import pytest

from producers.config import SimConfig, parse_shock
from producers.simulator import Marketplace
from stream_features.contract import (
    DasherEvent,
    Event,
    MarketSupplySnapshot,
    OrderCreated,
    OrderDelivered,
    decode,
    encode,
    event_time,
)

FRIDAY = datetime(2026, 3, 6, tzinfo=UTC)
END = FRIDAY + timedelta(days=3)


@dataclass(frozen=True)
class Delivered:
    """One delivered order with the state it met when it was created."""

    created: OrderCreated
    duration_s: float
    store_load: int  # the store's orders in the 20 minutes before
    backlog: float  # the market's outstanding orders per on-shift dasher (latest snapshot)
    busy_ratio: float


@pytest.fixture(scope="module")
def events() -> list[Event]:
    return list(Marketplace(SimConfig(), seed=7).events(FRIDAY, END))


@pytest.fixture(scope="module")
def delivered(events: list[Event]) -> list[Delivered]:
    recent: dict[str, deque[datetime]] = defaultdict(deque)
    latest: dict[str, MarketSupplySnapshot] = {}
    seen: dict[str, tuple[OrderCreated, int, float, float]] = {}
    out = []
    for event in events:
        if isinstance(event, MarketSupplySnapshot):
            latest[event.market_id] = event
        elif isinstance(event, OrderCreated):
            window = recent[event.store_id]
            while window and window[0] <= event.created_at - timedelta(minutes=20):
                window.popleft()
            snap = latest[event.market_id]
            backlog = snap.outstanding_orders / max(snap.onshift_dashers, 1)
            ratio = snap.busy_dashers / max(snap.onshift_dashers, 1)
            seen[event.order_id] = (event, len(window), backlog, ratio)
            window.append(event.created_at)
        elif isinstance(event, OrderDelivered):
            order, load, backlog, ratio = seen[event.order_id]
            duration = (event.delivered_at - order.created_at).total_seconds()
            out.append(Delivered(order, duration, load, backlog, ratio))
    return out


def _mean(values: list[float]) -> float:
    assert values, "an empty group: the simulation no longer produces this case"
    return statistics.fmean(values)


# --- the stream ----------------------------------------------------------------------------


def test_every_event_is_valid_under_the_contract(events: list[Event]) -> None:
    assert all(decode(encode(e)) == e for e in events)
    kinds = Counter(type(e).__name__ for e in events)
    assert set(kinds) == {"OrderCreated", "OrderDelivered", "MarketSupplySnapshot", "DasherEvent"}
    assert kinds["DasherEvent"] < kinds["OrderCreated"] / 2  # low volume


def test_event_time_never_goes_back_and_stays_in_the_period(events: list[Event]) -> None:
    times = [event_time(e) for e in events]
    assert all(a <= b for a, b in pairwise(times))
    assert times[0] == FRIDAY
    assert times[-1] < END


def test_demand_matches_the_configured_volume(events: list[Event]) -> None:
    orders = sum(isinstance(e, OrderCreated) for e in events)
    # Friday to Sunday, with weekends busier than the weekly mean the config is set for
    assert 0.85 * 3 * 15_000 < orders < 1.3 * 3 * 15_000


def test_every_delivery_follows_its_order_and_pickup(events: list[Event]) -> None:
    created: dict[str, OrderCreated] = {}
    deliveries = 0
    for event in events:
        if isinstance(event, OrderCreated):
            assert event.order_id not in created
            created[event.order_id] = event
        elif isinstance(event, OrderDelivered):
            order = created.pop(event.order_id)  # KeyError: delivered before it was created
            assert (order.store_id, order.market_id) == (event.store_id, event.market_id)
            assert event.picked_up_at is not None
            assert order.created_at < event.picked_up_at < event.delivered_at
            deliveries += 1
    assert deliveries > 0.95 * (deliveries + len(created))  # only the last hour's stay open


def test_snapshots_agree_with_the_events_before_them(events: list[Event]) -> None:
    outstanding: Counter[str] = Counter()
    shift_moves: Counter[str] = Counter()
    last_onshift: dict[str, int] = {}
    checked = 0
    for event in events:
        if isinstance(event, OrderCreated):
            outstanding[event.market_id] += 1
        elif isinstance(event, OrderDelivered):
            outstanding[event.market_id] -= 1
        elif isinstance(event, DasherEvent):
            shift_moves[event.market_id] += 1 if event.kind == "shift_start" else -1
        else:
            m = event.market_id
            assert event.outstanding_orders == outstanding[m]
            if m in last_onshift:
                assert event.onshift_dashers == last_onshift[m] + shift_moves[m]
            assert 0 <= event.busy_dashers <= event.onshift_dashers
            last_onshift[m], shift_moves[m] = event.onshift_dashers, 0
            checked += 1
    assert checked == 6 * 3 * 1440


def test_orders_have_consistent_baskets(events: list[Event]) -> None:
    orders = [e for e in events if isinstance(e, OrderCreated)]
    for o in orders:
        assert o.min_item_price <= o.max_item_price
        assert o.num_distinct_items <= o.total_items
        assert o.min_item_price * o.total_items <= o.subtotal <= o.max_item_price * o.total_items
        assert o.store_lat is not None and o.consumer_lat is not None
    assert len({o.store_category for o in orders}) >= 10
    assert len({o.order_protocol for o in orders}) == 7


# --- determinism ---------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_stream_and_another_seed_does_not() -> None:
    def run(seed: int, hours: int) -> list[bytes]:
        stream = Marketplace(SimConfig(stores=300), seed).events(
            FRIDAY, FRIDAY + timedelta(hours=hours)
        )
        return [encode(e) for e in stream]

    first = run(3, 6)
    assert first == run(3, 6)
    assert first != run(4, 6)
    longer = run(3, 8)  # a longer run starts with the same events: nothing depends on `end`
    assert longer[: len(first)] == first


def test_history_and_live_streams_from_one_seed_share_the_world() -> None:
    a = Marketplace(SimConfig(), seed=5)
    b = Marketplace(SimConfig(), seed=5)
    assert a.world.stores == b.world.stores
    later = list(islice(b.events(END, END + timedelta(hours=1)), 2000))
    stores = {s.store_id for s in a.world.stores}
    assert {e.store_id for e in later if isinstance(e, OrderCreated)} <= stores


# --- what drives durations -----------------------------------------------------------------


def test_durations_rise_with_store_load(delivered: list[Delivered]) -> None:
    idle = _mean([d.duration_s for d in delivered if d.store_load == 0])
    busy = _mean([d.duration_s for d in delivered if d.store_load >= 4])
    assert busy > 1.15 * idle


def test_durations_rise_with_dasher_scarcity(delivered: list[Delivered]) -> None:
    by_backlog = sorted(delivered, key=lambda d: d.backlog)
    fifth = len(by_backlog) // 5
    calm = _mean([d.duration_s for d in by_backlog[:fifth]])
    scarce = _mean([d.duration_s for d in by_backlog[-fifth:]])
    assert scarce > 1.2 * calm
    by_ratio = sorted(delivered, key=lambda d: d.busy_ratio)
    assert _mean([d.duration_s for d in by_ratio[-fifth:]]) > _mean(
        [d.duration_s for d in by_ratio[:fifth]]
    )


def test_durations_rise_with_order_size(delivered: list[Delivered]) -> None:
    small = _mean([d.duration_s for d in delivered if d.created.total_items <= 2])
    large = _mean([d.duration_s for d in delivered if d.created.total_items >= 8])
    assert large > small


def test_about_one_percent_are_gross_outliers(delivered: list[Delivered]) -> None:
    median = statistics.median(d.duration_s for d in delivered)
    share = sum(d.duration_s > 3 * median for d in delivered) / len(delivered)
    assert 0.004 < share < 0.02
    assert 20 * 60 < median < 60 * 60  # a plausible delivery time


def test_demand_peaks_at_lunch_and_dinner_and_weekends_differ(events: list[Event]) -> None:
    per_hour: Counter[tuple[int, int]] = Counter()
    for e in events:
        if isinstance(e, OrderCreated):
            per_hour[(e.created_at.weekday(), e.created_at.hour)] += 1
    friday = [per_hour[(4, h)] for h in range(24)]
    assert friday[12] > 4 * friday[4] and friday[12] > 1.5 * friday[15]
    assert max(friday[17:21]) > 4 * friday[4] and max(friday[17:21]) > 1.5 * friday[15]
    saturday = [per_hour[(5, h)] for h in range(24)]
    assert sum(saturday) > 1.1 * sum(friday)
    assert saturday[10] > 2 * friday[10]  # brunch


# --- knobs ---------------------------------------------------------------------------------


def _market_stats(config: SimConfig, market: str) -> dict[str, float]:
    """Mean on-shift dashers and order counts in ``market`` before/after noon on Friday.

    The run starts at 9:00, so a shock at offset 10800 s starts at noon.
    """
    noon = FRIDAY + timedelta(hours=12)
    onshift: dict[bool, list[int]] = {False: [], True: []}
    orders: Counter[bool] = Counter()
    three_h = timedelta(hours=3)
    stream = Marketplace(config, seed=11).events(noon - three_h, noon + three_h)
    for e in stream:
        if isinstance(e, MarketSupplySnapshot) and e.market_id == market:
            if e.at < noon or e.at >= noon + timedelta(minutes=30):  # supply adjusts meanwhile
                onshift[e.at >= noon].append(e.onshift_dashers)
        elif isinstance(e, OrderCreated) and e.market_id == market:
            orders[e.created_at >= noon] += 1
    return {
        "onshift_before": _mean([float(v) for v in onshift[False]]),
        "onshift_after": _mean([float(v) for v in onshift[True]]),
        "orders_before": orders[False],
        "orders_after": orders[True],
    }


def test_a_dasher_shortage_halves_supply_in_its_market_only() -> None:
    base = SimConfig(stores=400)
    shocked = base.model_copy(update={"shocks": (parse_shock("m2:dasher_shortage:10800:0.5"),)})
    plain, hit = _market_stats(base, "m2"), _market_stats(shocked, "m2")
    assert hit["onshift_after"] < 0.65 * plain["onshift_after"]
    assert hit["onshift_before"] == pytest.approx(plain["onshift_before"])
    assert _market_stats(shocked, "m1") == _market_stats(base, "m1")


def test_a_demand_surge_multiplies_orders_in_its_market() -> None:
    base = SimConfig(stores=400)
    surged = base.model_copy(update={"shocks": (parse_shock("m1:demand_surge:10800:3"),)})
    plain, hit = _market_stats(base, "m1"), _market_stats(surged, "m1")
    assert hit["orders_after"] > 2.3 * plain["orders_after"]


def test_dasher_events_and_locations_can_be_left_out() -> None:
    config = SimConfig(stores=200, dasher_events=False, locations=False)
    lunch = FRIDAY + timedelta(hours=11)
    stream = list(Marketplace(config, 1).events(lunch, lunch + timedelta(hours=2)))
    assert not any(isinstance(e, DasherEvent) for e in stream)
    orders = [e for e in stream if isinstance(e, OrderCreated)]
    assert orders and all(o.store_lat is None and o.consumer_lon is None for o in orders)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("m1:dasher_shortage:60", "MARKET:KIND"),
        ("m1:blackout:60:0.5", "dasher_shortage"),
        ("m1:demand_surge:-5:2", "greater than or equal"),
    ],
)
def test_bad_shocks_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_shock(text)


def test_a_shock_on_an_unknown_market_is_refused() -> None:
    with pytest.raises(ValueError, match="m9"):
        SimConfig(markets=6, shocks=(parse_shock("m9:demand_surge:0:2"),))


def test_naive_or_reversed_periods_are_refused() -> None:
    market = Marketplace(SimConfig(stores=10))
    with pytest.raises(ValueError, match="timezone"):
        market.events(datetime(2026, 3, 1), datetime(2026, 3, 2))
    with pytest.raises(ValueError, match="not after"):
        market.events(END, FRIDAY)

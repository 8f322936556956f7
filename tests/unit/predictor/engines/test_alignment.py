"""The alignment policy of the confluent worker: what it releases, holds, pauses and resumes."""

from __future__ import annotations

import random

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from predictor.engines.alignment import Aligner, event_time_ms
from predictor.serving.records import RawRecord

T0_MS = 1_772_409_600_000  # 2026-03-02T00:00:00Z
WALL_MS = T0_MS + 30 * 86_400_000  # a month later: nothing in these tests is live
MARGIN_MS = 60_000


def record(topic: str, partition: int, at_ms: int, offset: int = 0) -> RawRecord:
    return RawRecord(orjson.dumps({"type": "DasherEvent", "at": at_ms}), topic, partition, offset)


def times(records: list[RawRecord]) -> list[int | None]:
    return [event_time_ms(r.value()) for r in records]


def aligner(max_release: int = 100, idle_s: float = 1.0) -> Aligner[RawRecord]:
    return Aligner(MARGIN_MS, idle_s, max_release, pause_at=max_release)


def test_event_time_reads_each_kind_and_format() -> None:
    order = b'{"type":"OrderCreated","order_id":"o1","created_at":"2026-03-02T00:00:00Z"}'
    assert event_time_ms(order) == T0_MS
    assert event_time_ms(b'{"created_at" : "2026-03-02T01:00:00+01:00"}') == T0_MS
    assert event_time_ms(b'{"at": 1772409600.25}') == T0_MS + 250
    assert event_time_ms(b'{"at": 1772409600250}') == T0_MS + 250
    assert event_time_ms(b'{"store_id":"\\"at\\":1","at":"2026-03-02T00:00:00Z"}') == T0_MS
    for bad in (b"", b"\xff\xfe", b'{"at": "yesterday"}', b'{"at": "2026-13-01T00:00:00Z"}'):
        assert event_time_ms(bad) is None


def test_live_records_pass_straight_through_in_order() -> None:
    a = aligner()
    a.assign([("orders", 0), ("orders", 1), ("deliveries", 0)], now_s=0.0)
    now_ms = T0_MS
    batch = [record("orders", i % 2, now_ms - 1000 + i) for i in range(50)]
    assert a.admit(batch, now_s=0.0, wall_ms=now_ms) == batch
    moves = a.moves(now_s=0.0)
    assert moves.pause == moves.resume == [] and a.waiting == 0


def test_a_partition_ahead_waits_until_the_others_catch_up() -> None:
    a = aligner()
    a.assign([("orders", 0), ("orders", 1)], now_s=0.0)
    ahead = [record("orders", 1, T0_MS + m * 60_000) for m in range(10, 20)]
    behind = [record("orders", 0, T0_MS + m * 60_000) for m in range(0, 10)]
    assert a.admit(ahead, now_s=0.0, wall_ms=WALL_MS) == []  # orders[0] not heard from yet
    released = a.admit(behind, now_s=0.1, wall_ms=WALL_MS)
    assert times(released) == [T0_MS + m * 60_000 for m in range(0, 10)] + [T0_MS + 600_000]
    assert a.waiting == 9
    # orders[0] goes quiet: after the idle time it no longer holds orders[1] back
    assert len(a.admit([], now_s=0.5, wall_ms=WALL_MS)) == 0
    assert len(a.admit([], now_s=1.2, wall_ms=WALL_MS)) == 9


def test_untimed_records_keep_their_place_and_move_no_clock() -> None:
    a = aligner()
    a.assign([("orders", 0)], now_s=0.0)
    poison = RawRecord(b"not json", "orders", 0, 1)
    run = [record("orders", 0, T0_MS, 0), poison, record("orders", 0, T0_MS + 1000, 2)]
    assert a.admit(run, now_s=0.0, wall_ms=WALL_MS) == run
    a.assign([("orders", 1)], now_s=0.0)
    assert a.admit([poison], now_s=0.1, wall_ms=WALL_MS) == [poison]  # released, though 1 is new


def test_pauses_a_partition_with_a_batch_waiting_and_resumes_it_at_half() -> None:
    a = aligner(max_release=10)
    a.assign([("orders", 0), ("orders", 1)], now_s=0.0)
    first = record("orders", 0, T0_MS)
    assert a.admit([first], now_s=0.0, wall_ms=WALL_MS) == []  # orders[1] not heard from yet
    ahead = [record("orders", 1, T0_MS + 600_000 + i * 1000, i) for i in range(12)]
    assert a.admit(ahead, now_s=0.0, wall_ms=WALL_MS) == [first]
    moves = a.moves(now_s=0.0)
    assert moves.pause == [("orders", 1)] and moves.resume == [] and a.paused == 1
    # orders[0] catches up to within the margin of the first seven
    a.admit([record("orders", 0, T0_MS + 546_000, 1)], now_s=0.1, wall_ms=WALL_MS)
    assert a.waiting == 5
    moves = a.moves(now_s=0.1)
    assert moves.pause == [] and moves.resume == [("orders", 1)] and a.paused == 0


def test_the_partition_the_frontier_waits_on_is_never_paused() -> None:
    """librdkafka does not wake its fetcher on a resume: one partition always keeps fetching."""
    a = aligner(max_release=2)
    a.assign([("orders", 0), ("orders", 1)], now_s=0.0)
    a.admit([record("orders", 0, T0_MS + 3_600_000 + i, i) for i in range(3)], 0.0, WALL_MS)
    a.admit([record("orders", 1, T0_MS + i, i) for i in range(3)], 0.0, WALL_MS)
    assert a.moves(now_s=0.0).pause == [("orders", 0)]  # orders[1]: less than a batch waits
    a.admit([record("orders", 1, T0_MS + 7_200_000 + i, 3 + i) for i in range(3)], 0.1, WALL_MS)
    moves = a.moves(now_s=0.1)  # both have a batch waiting; orders[0] is the earlier
    assert moves.pause == [("orders", 1)] and moves.resume == [("orders", 0)] and a.paused == 1


def test_rewind_and_forget_drop_what_is_held() -> None:
    a = aligner(max_release=2)
    a.assign([("orders", 0), ("orders", 1)], now_s=0.0)
    a.admit([record("orders", 0, T0_MS)], now_s=0.0, wall_ms=WALL_MS)
    a.admit([record("orders", 1, T0_MS + 3_600_000 + i) for i in range(3)], 0.0, WALL_MS)
    assert a.moves(now_s=0.0).pause == [("orders", 1)]
    a.rewind([("orders", 1)], now_s=0.1)
    assert a.waiting == 0 and a.moves(now_s=0.1).resume == [("orders", 1)]
    a.admit([record("orders", 1, T0_MS + 3_600_000 + i) for i in range(3)], 0.2, WALL_MS)
    a.forget([("orders", 1)])
    assert a.waiting == 0 and a.paused == 0
    assert a.frontier_ms(now_s=0.2) == T0_MS  # orders[0] alone


def test_never_releases_more_than_a_batch() -> None:
    a = aligner(max_release=7)
    a.assign([("orders", 0)], now_s=0.0)
    out = a.admit([record("orders", 0, T0_MS + i, i) for i in range(20)], 0.0, WALL_MS)
    assert len(out) == 7
    assert len(a.admit([], 0.0, WALL_MS)) == 7 and len(a.admit([], 0.0, WALL_MS)) == 6


@settings(max_examples=100, deadline=None)
@given(
    spans=st.lists(st.integers(1, 400), min_size=2, max_size=6),
    seed=st.integers(0, 2**32 - 1),
    max_release=st.integers(1, 60),
)
def test_a_skewed_backlog_is_released_within_the_margin_and_whole(
    spans: list[int], seed: int, max_release: int
) -> None:
    """Partitions of very different densities, consumed in random runs while not paused: every
    record comes out once, in its partition's order, none more than the margin behind one
    released before it, and the loop never stalls for good."""
    rng = random.Random(seed)
    backlog = {}
    for p, count in enumerate(spans):
        stamps = sorted(rng.randrange(0, 4 * 3_600_000) for _ in range(count))
        backlog[("t", p)] = [record("t", p, T0_MS + ms, i) for i, ms in enumerate(stamps)]
    a = aligner(max_release=max_release, idle_s=1.0)
    a.assign(backlog, now_s=0.0)
    paused: set[tuple[str, int]] = set()
    cursor = dict.fromkeys(backlog, 0)
    released: list[RawRecord] = []
    newest = 0
    now = 0.0
    for _ in range(100_000):
        runs = []
        for tp in rng.sample(sorted(backlog), len(backlog)):
            if tp in paused or cursor[tp] == len(backlog[tp]):
                continue
            n = rng.randint(1, 50)
            runs += backlog[tp][cursor[tp] : cursor[tp] + n]
            cursor[tp] += n
        out = a.admit(runs, now_s=now, wall_ms=WALL_MS)
        for ms in times(out):
            assert ms is not None
            assert ms >= newest - MARGIN_MS, "released further behind than the margin"
            newest = max(newest, ms)
        released += out
        moves = a.moves(now_s=now)
        paused = (paused | set(moves.pause)) - set(moves.resume)
        if len(released) == sum(spans):
            break
        now += 0.05  # a partition delivering every step is never idle
    assert len(released) == sum(spans), "stalled"
    for tp, records in backlog.items():
        assert [r for r in released if (r.topic(), r.partition()) == tp] == records

"""Offsets are committed only behind batches whose every record the broker acknowledged."""

from __future__ import annotations

from predictor.serving.backoff import backoff_s
from predictor.serving.commits import CommitTracker


def test_commits_advance_in_order_and_stop_at_a_waiting_batch() -> None:
    t = CommitTracker()
    a = t.open({("o", 0): 0}, {("o", 0): 5}, pending=2)
    b = t.open({("o", 1): 0}, {("o", 1): 3}, pending=1)
    c = t.open({("o", 0): 5}, {("o", 0): 9}, pending=1)
    b.on_delivery(None)
    c.on_delivery(None)
    assert t.take_committable() == {}  # a is the oldest and still waits
    a.on_delivery(None)
    assert t.take_committable() == {}  # half of a
    a.on_delivery(None)
    assert t.take_committable() == {("o", 0): 9, ("o", 1): 3}
    assert len(t) == 0


def test_a_failed_delivery_blocks_commits_and_rewinds_to_the_first_uncommitted_offset() -> None:
    t = CommitTracker()
    ok = t.open({("o", 0): 0}, {("o", 0): 5}, pending=1)
    bad = t.open({("o", 0): 5, ("o", 1): 40}, {("o", 0): 8, ("o", 1): 41}, pending=2)
    later = t.open({("o", 2): 7, ("o", 0): 8}, {("o", 2): 9, ("o", 0): 10}, pending=1)
    ok.on_delivery(None)
    bad.on_delivery(None)
    bad.on_delivery("MSG_TIMED_OUT")
    later.on_delivery(None)
    assert t.failed == ["MSG_TIMED_OUT"]
    assert t.take_committable() == {("o", 0): 5}
    assert t.rewind() == {("o", 0): 5, ("o", 1): 40, ("o", 2): 7}
    assert t.failed == [] and len(t) == 0


def test_a_batch_with_nothing_to_produce_is_complete_at_once() -> None:
    t = CommitTracker()
    batch = t.open({("d", 0): 3}, {("d", 0): 4}, pending=0)
    assert batch.done and batch.acked_wall_ms is not None
    assert t.take_committable() == {("d", 0): 4}


def test_backoff_doubles_up_to_its_cap() -> None:
    delays = [backoff_s(a, base_s=0.1, cap_s=1.0) for a in range(6)]
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert backoff_s(10_000) == 5.0

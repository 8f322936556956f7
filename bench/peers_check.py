"""The side-by-side benchmark's oracle and output checker: pure, so they can be tested by hand.

The job every contender does: for each order, the number of orders its store received in the
last 10 minutes of event time, with etastream's semantics (``stream_features/definitions.py``):
event time is cut into 60 s buckets, and an order at time ``t`` (bucket ``B = t // 60 s``) sees
the orders of its store in buckets ``B-9 .. B`` that were read before it (its partition's
order; the store is the key, so one partition holds all of a store's orders). The order never
counts itself, and an order read earlier but stamped in a later bucket is not in the window.
On input in event-time order (the bench's), that is: the store's earlier orders with
``(B-9) * 60 s <= created_at <= t``, i.e. the current minute so far plus the 9 before it, the
same as a hopping window of 10 min advancing by 1 min, aligned to the minute, minus the order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = [
    "BUCKET_MS",
    "WINDOW_BUCKETS",
    "Check",
    "bucket_of",
    "check_outputs",
    "count_then_add",
    "expected_counts",
    "own_window_start_ms",
]

BUCKET_MS = 60_000
WINDOW_BUCKETS = 10


def bucket_of(ts_ms: int) -> int:
    """The 60 s event-time bucket that holds ``ts_ms``.

    >>> bucket_of(119_999), bucket_of(120_000)
    (1, 2)
    """
    return ts_ms // BUCKET_MS


def own_window_start_ms(ts_ms: int) -> int:
    """Start of the hopping window (10 min, step 1 min) that ends with ``ts_ms``'s bucket.

    Of the 10 hopping windows an event falls in, this is the one the oracle's count is read
    from: it covers buckets ``B-9 .. B``.

    >>> own_window_start_ms(10 * 60_000 + 5), own_window_start_ms(9 * 60_000 + 59_999)
    (60000, 0)
    """
    return (bucket_of(ts_ms) - WINDOW_BUCKETS + 1) * BUCKET_MS


def count_then_add(kept: list[list[int]], bucket: int) -> tuple[list[list[int]], int]:
    """The store's orders in the 10 buckets ending with ``bucket``, then this one counted.

    Buckets before that window are dropped: the input is in event-time order per store
    (``peers_input``), so no later order needs them.

    >>> state, counts = [], []
    >>> for b in (0, 0, 9, 10, 10, 19, 20):
    ...     state, n = count_then_add(state, b)
    ...     counts.append(n)
    >>> counts, state
    ([0, 1, 2, 1, 2, 2, 1], [[19, 1], [20, 1]])
    """
    first = bucket - WINDOW_BUCKETS + 1
    kept = [pair for pair in kept if pair[0] >= first]
    count = sum(n for b, n in kept if b <= bucket)
    for pair in kept:
        if pair[0] == bucket:
            pair[1] += 1
            break
    else:
        kept.append([bucket, 1])
        kept.sort()
    return kept, count


def expected_counts(orders: Iterable[tuple[str, str, int]]) -> dict[str, int]:
    """Order id -> the store's count before it, for ``(order_id, store_id, ts_ms)`` in read
    order (each store's orders in the order its partition delivers them).

    >>> expected_counts([("a", "s1", 0), ("b", "s1", 30_000), ("c", "s2", 30_000)])
    {'a': 0, 'b': 1, 'c': 0}
    """
    seen: dict[str, Counter[int]] = {}
    out: dict[str, int] = {}
    for order_id, store_id, ts_ms in orders:
        buckets = seen.setdefault(store_id, Counter())
        bucket = bucket_of(ts_ms)
        out[order_id] = sum(buckets[b] for b in range(bucket - WINDOW_BUCKETS + 1, bucket + 1))
        buckets[bucket] += 1
    return out


@dataclass(frozen=True)
class Check:
    """A contender's outputs against the oracle.

    ``wrong``: orders with at least one output whose count is not the expected one;
    ``missing``: orders with no output; ``duplicated``: outputs beyond the first per order;
    ``unexpected``: outputs naming an order that was not in the input.
    """

    expected: int
    received: int
    wrong: int
    missing: int
    duplicated: int
    unexpected: int
    examples: tuple[tuple[str, int, int], ...] = field(default=())  # (order, expected, got)

    @property
    def ok(self) -> bool:
        """Every order answered exactly once with the right count."""
        return not (self.wrong or self.missing or self.duplicated or self.unexpected)


def check_outputs(
    expected: Mapping[str, int], outputs: Iterable[tuple[str, int]], max_examples: int = 5
) -> Check:
    """Compare ``(order_id, count)`` outputs with ``expected``.

    >>> check_outputs({"a": 0, "b": 1}, [("a", 0), ("a", 0), ("b", 2)])
    Check(expected=2, received=3, wrong=1, missing=0, duplicated=1, unexpected=0, \
examples=(('b', 1, 2),))
    """
    copies: Counter[str] = Counter()
    wrong: dict[str, int] = {}
    unexpected = received = 0
    for order_id, count in outputs:
        received += 1
        want = expected.get(order_id)
        if want is None:
            unexpected += 1
            continue
        copies[order_id] += 1
        if count != want and order_id not in wrong:
            wrong[order_id] = count
    examples = tuple((o, expected[o], got) for o, got in list(wrong.items())[:max_examples])
    return Check(
        expected=len(expected),
        received=received,
        wrong=len(wrong),
        missing=len(expected) - len(copies),
        duplicated=sum(copies.values()) - len(copies),
        unexpected=unexpected,
        examples=examples,
    )

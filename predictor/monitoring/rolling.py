"""Event-time rings of bucketed sums: the memory behind every rolling window of the monitor.

A ``Ring`` holds one numeric vector per event-time bucket in a fixed number of slots, so its
memory is set when it is built and never grows with the stream. A window is the sum of the
buckets that end it; a value older than the ring's span is refused (and counted late) rather
than overwriting a newer bucket. Two rings cover the three windows: one-minute buckets for
15 min and 1 h, five-minute buckets for 24 h.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "ABS_EDGES_S",
    "FINE_BUCKET_S",
    "WINDOWS",
    "Ring",
    "WindowRings",
    "hist_quantile",
    "log_bins",
]

Array = npt.NDArray[np.float64]

WINDOWS: dict[str, int] = {"15m": 900, "1h": 3600, "24h": 86400}
"""The rolling windows the monitor keeps, by label, in seconds of event time."""


FINE_BUCKET_S = 60
"""Bucket of the ring behind the 15 min and 1 h windows (the 24 h one uses five minutes)."""


def log_bins(ratio: float = 1.05, top: float = 2 * 86400.0) -> Array:
    """Histogram edges for non-negative seconds: 0, then 1 s growing by ``ratio`` to ``top``.

    A quantile read from them is within ``ratio - 1`` (relative) of the exact one above 1 s.

    >>> log_bins(2.0, 10.0).tolist()
    [0.0, 1.0, 2.0, 4.0, 8.0, 16.0]
    """
    n = int(np.ceil(np.log(top) / np.log(ratio)))
    return np.concatenate([[0.0], ratio ** np.arange(n + 1)])


ABS_EDGES_S = log_bins()
"""Edges of the absolute-error and freshness histograms (the last bin is open-ended)."""


def hist_quantile(counts: Array, edges: Array, q: float) -> float | None:
    """The ``q`` quantile of values histogrammed in ``counts`` (bin i is [edges[i],
    edges[i+1]), the last bin open), linearly interpolated within its bin; None when empty.

    >>> hist_quantile(np.array([0.0, 10.0, 0.0]), np.array([0.0, 10.0, 20.0]), 0.5)
    15.0
    """
    total = float(counts.sum())
    if total <= 0:
        return None
    cumulative = np.cumsum(counts)
    target = q * total
    i = int(np.searchsorted(cumulative, target, side="left"))
    i = min(i, counts.size - 1)
    lo = float(edges[i]) if i < edges.size else float(edges[-1])
    hi = float(edges[i + 1]) if i + 1 < edges.size else lo
    before = float(cumulative[i - 1]) if i else 0.0
    inside = float(counts[i])
    frac = (target - before) / inside if inside else 0.0
    return lo + (hi - lo) * min(max(frac, 0.0), 1.0)


class Ring:
    """``slots`` buckets of ``bucket_s`` seconds, each a vector of ``width`` sums.

    >>> ring = Ring(bucket_s=60, slots=3, width=1)
    >>> ring.add(np.array([0, 60_000, 61_000]), np.ones((3, 1)))
    0
    >>> ring.window(end_ms=61_000, span_s=120).tolist()
    [3.0]
    >>> ring.add(np.array([300_000]), np.ones((1, 1))), ring.window(300_000, 120).tolist()
    (0, [1.0])
    >>> ring.add(np.array([0]), np.ones((1, 1)))  # older than the ring now holds: late
    1
    """

    def __init__(self, bucket_s: int, slots: int, width: int) -> None:
        self.bucket_ms = bucket_s * 1000
        self.slots = slots
        self.sums = np.zeros((slots, width), dtype=np.float64)
        self.bucket = np.full(slots, -1, dtype=np.int64)

    @property
    def span_s(self) -> int:
        return self.slots * self.bucket_ms // 1000

    def add(self, ts_ms: npt.NDArray[np.int64], values: Array) -> int:
        """Add row i of ``values`` to the bucket of ``ts_ms[i]``; returns how many were late."""
        if ts_ms.size == 0:
            return 0
        buckets = ts_ms // self.bucket_ms
        newest = max(int(buckets.max()), int(self.bucket.max()))
        keep = buckets > newest - self.slots
        buckets, values = buckets[keep], values[keep]
        for b in np.unique(buckets):  # claim each slot for its bucket, clearing an older one
            slot = int(b % self.slots)
            if self.bucket[slot] != b:
                if self.bucket[slot] > b:  # pragma: no cover - excluded by ``keep`` above
                    continue
                self.bucket[slot] = b
                self.sums[slot] = 0.0
        if buckets.size:  # sum rows per bucket (sorted + reduceat: far cheaper than add.at)
            order = np.argsort(buckets, kind="stable")
            ordered = buckets[order]
            starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
            self.sums[ordered[starts] % self.slots] += np.add.reduceat(values[order], starts)
        return int((~keep).sum())

    def window(self, end_ms: int, span_s: int) -> Array:
        """Sums over the buckets in the ``span_s`` seconds ending with the one of ``end_ms``."""
        end = end_ms // self.bucket_ms
        first = end - span_s * 1000 // self.bucket_ms + 1
        live = (self.bucket >= first) & (self.bucket <= end)
        out: Array = self.sums[live].sum(axis=0)
        return out


@dataclass
class WindowRings:
    """A one-minute ring for the 15 min and 1 h windows, a five-minute one for 24 h."""

    fine: Ring
    coarse: Ring

    @classmethod
    def of_width(cls, width: int) -> WindowRings:
        return cls(Ring(FINE_BUCKET_S, 60, width), Ring(300, 288, width))

    def add(self, ts_ms: npt.NDArray[np.int64], values: Array) -> int:
        """Add to both rings; the count of values too old for even the 24 h window."""
        self.fine.add(ts_ms, values)
        return self.coarse.add(ts_ms, values)

    def window(self, end_ms: int, label: str) -> Array:
        span = WINDOWS[label]
        ring = self.fine if span <= self.fine.span_s else self.coarse
        return ring.window(end_ms, span)

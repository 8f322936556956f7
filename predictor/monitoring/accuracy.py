"""Rolling prediction error from joined pairs: MAE, bias, p90 absolute error and the ETA
range's coverage and width per group.

Every joined pair counts in three groups: all traffic (``*``), its model version
(``name:version``) and its market. Each group keeps, per event-time bucket of the delivery
time, the count, the sum of errors, the sum of absolute errors, the count of pairs that carried
a range, how many of those had the actual duration inside it, the sum of their widths, and a
log-spaced histogram of absolute errors (the p90 is read from it, within 5 %). MAE, bias,
coverage and width are exact. A prediction without a range (a model trained without one) is
in the MAE but neither a hit nor a miss of the range: coverage is over ranged pairs only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from predictor.monitoring.join import Joined
from predictor.monitoring.messages import ErrorStats
from predictor.monitoring.rolling import ABS_EDGES_S, WINDOWS, WindowRings, hist_quantile

__all__ = ["ErrorWindows", "GroupKey"]

GroupKey = tuple[str, str]
"""(scope, key): ("all", "*"), ("model", "eta:3"), ("market", "m2")."""

_HEAD = 6  # count, sum of errors, sum of |errors|, ranged count, inside the range, sum of widths
_WIDTH = _HEAD + ABS_EDGES_S.size


class ErrorWindows:
    """Error sums per group in event-time rings; ``stats`` reads any window of any group.

    >>> from predictor.monitoring.join import joined_from
    >>> import orjson
    >>> p = orjson.dumps(["1", "m1", "s1", 0, 100, 1500.0, 10.0, None, 1000.0, 1800.0])
    >>> w = ErrorWindows()
    >>> w.add([joined_from("o1", "eta", p, orjson.dumps([1_200_000]))])
    >>> s = w.stats("1h")[("market", "m1")]
    >>> s.count, s.mae_s, s.bias_s, s.range_samples, s.range_coverage, s.range_width_s
    (1, 300.0, 300.0, 1, 1.0, 800.0)
    """

    def __init__(self) -> None:
        self.groups: dict[GroupKey, WindowRings] = {}
        self.until_ms: int | None = None
        """Event time the windows end at: the latest delivery time seen."""
        self.late = 0
        self.added = 0

    def _ring(self, key: GroupKey) -> WindowRings:
        ring = self.groups.get(key)
        if ring is None:
            ring = self.groups[key] = WindowRings.of_width(_WIDTH)
        return ring

    def add(self, pairs: Sequence[Joined]) -> None:
        if not pairs:
            return
        ts = np.fromiter((p.delivered_ms for p in pairs), dtype=np.int64, count=len(pairs))
        err = np.fromiter((p.error_s for p in pairs), dtype=np.float64, count=len(pairs))
        rows = np.zeros((len(pairs), _WIDTH))
        rows[:, 0] = 1.0
        rows[:, 1] = err
        rows[:, 2] = np.abs(err)
        low = np.fromiter((p.p10_s for p in pairs), dtype=np.float64, count=len(pairs))
        high = np.fromiter((p.p90_s for p in pairs), dtype=np.float64, count=len(pairs))
        actual = np.fromiter((p.actual_s for p in pairs), dtype=np.float64, count=len(pairs))
        ranged = ~np.isnan(low)
        rows[:, 3] = ranged
        rows[:, 4] = ranged & (actual >= low) & (actual <= high)  # NaN compares False
        rows[:, 5] = np.where(ranged, high - low, 0.0)
        bins = np.searchsorted(ABS_EDGES_S, rows[:, 2], side="right") - 1
        rows[np.arange(len(pairs)), _HEAD + bins] = 1.0
        self.late += self._ring(("all", "*")).add(ts, rows)
        for scope, labels in (
            ("model", [f"{p.model_name}:{p.model_version}" for p in pairs]),
            ("market", [p.market_id for p in pairs]),
        ):
            codes = np.array(labels)
            for label in np.unique(codes):
                mask = codes == label
                self._ring((scope, str(label))).add(ts[mask], rows[mask])
        self.added += len(pairs)
        newest = int(ts.max())
        self.until_ms = newest if self.until_ms is None else max(self.until_ms, newest)

    def stats(self, window: str) -> dict[GroupKey, ErrorStats]:
        """Every group's numbers over ``window`` (15m, 1h, 24h) ending at ``until_ms``."""
        if window not in WINDOWS:
            raise ValueError(f"window must be one of {', '.join(WINDOWS)}, got {window!r}")
        out: dict[GroupKey, ErrorStats] = {}
        if self.until_ms is None:
            return out
        for (scope, key), ring in self.groups.items():
            sums = ring.window(self.until_ms, window)
            count, ranged = int(sums[0]), int(sums[3])
            if count == 0 and scope != "all":
                continue
            out[(scope, key)] = ErrorStats(
                scope=scope,
                key=key,
                count=count,
                mae_s=float(sums[2] / count) if count else None,
                bias_s=float(sums[1] / count) if count else None,
                p90_abs_error_s=hist_quantile(sums[_HEAD:], ABS_EDGES_S, 0.9),
                range_samples=ranged,
                range_coverage=float(sums[4] / ranged) if ranged else None,
                range_width_s=float(sums[5] / ranged) if ranged else None,
            )
        return out

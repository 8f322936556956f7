"""Champion against challenger on the same delivered orders: a paired comparison.

Every shadow record (``ShadowPrediction``) joined with its delivery is one pair: the champion's
absolute error and the challenger's on the same order. The difference ``d = |challenger error|
- |champion error|`` is what decides: its mean (< 0 when the challenger is better) with a 95 %
normal-approximation confidence interval (``mean ± 1.96 · sd / √n``; n is in the hundreds when
it matters, where the approximation is sound), and a sign test (how many orders each model got
closer on, two-sided p by the normal approximation with continuity correction). Side by side
come MAE, bias and p90 absolute error of each. ``PairedWindows`` keeps the sums per champion
and challenger version in the monitor's event-time rings; ``compare`` computes the same numbers
exactly from arrays (the promotion guard reads the recorded pairs with it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from predictor.monitoring.join import PairedJoined
from predictor.monitoring.messages import ALL_MARKETS, ChampionChallenger
from predictor.monitoring.rolling import ABS_EDGES_S, WINDOWS, WindowRings, hist_quantile

__all__ = ["Z_95", "PairedWindows", "compare", "sign_test_p"]

Array = npt.NDArray[np.float64]
Z_95 = 1.959963984540054
"""The two-sided 95 % quantile of the standard normal."""

# count, sum err (champion, challenger), sum |err| (both), sum d, sum d², better, worse
_HEAD = 9
_BINS = ABS_EDGES_S.size
_WIDTH = _HEAD + 2 * _BINS


def sign_test_p(better: int, worse: int) -> float | None:
    """Two-sided p of ``better`` against ``worse`` under "each equally likely" (ties left out),
    by the normal approximation with continuity correction; None without any.

    >>> sign_test_p(50, 50)
    1.0
    >>> round(sign_test_p(70, 30), 6)
    9.6e-05
    """
    n = better + worse
    if n == 0:
        return None
    z = max(abs(better - worse) - 1, 0) / math.sqrt(n)
    return min(1.0, math.erfc(z / math.sqrt(2)))


def _from_sums(
    model_name: str,
    champion: str,
    challenger: str,
    sums: Array,
    window_s: int | None,
    market_id: str = ALL_MARKETS,
) -> ChampionChallenger:
    n = int(sums[0])
    mean_d = float(sums[6] / n) if n else None
    ci_low = ci_high = None
    if n >= 2 and mean_d is not None:
        var = max(float(sums[7] - n * mean_d * mean_d) / (n - 1), 0.0)
        half = Z_95 * math.sqrt(var / n)
        ci_low, ci_high = mean_d - half, mean_d + half
    better, worse = int(sums[8]), int(sums[5])  # ties (equal errors) are neither
    return ChampionChallenger(
        model_name=model_name,
        champion_version=champion,
        challenger_version=challenger,
        market_id=market_id,
        window_s=window_s,
        orders=n,
        champion_mae_s=float(sums[3] / n) if n else None,
        challenger_mae_s=float(sums[4] / n) if n else None,
        champion_bias_s=float(sums[1] / n) if n else None,
        challenger_bias_s=float(sums[2] / n) if n else None,
        champion_p90_abs_error_s=hist_quantile(sums[_HEAD : _HEAD + _BINS], ABS_EDGES_S, 0.9),
        challenger_p90_abs_error_s=hist_quantile(sums[_HEAD + _BINS :], ABS_EDGES_S, 0.9),
        mean_abs_error_diff_s=mean_d,
        diff_ci_low_s=ci_low,
        diff_ci_high_s=ci_high,
        challenger_better=better,
        challenger_worse=worse,
        sign_test_p=sign_test_p(better, worse),
    )


def _rows(champion_s: Array, challenger_s: Array, actual_s: Array) -> Array:
    """One ring row per pair: the sums' terms and both absolute errors' histogram bins."""
    n = champion_s.shape[0]
    e_champ, e_chall = champion_s - actual_s, challenger_s - actual_s
    a_champ, a_chall = np.abs(e_champ), np.abs(e_chall)
    d = a_chall - a_champ
    rows = np.zeros((n, _WIDTH))
    rows[:, 0] = 1.0
    rows[:, 1], rows[:, 2] = e_champ, e_chall
    rows[:, 3], rows[:, 4] = a_champ, a_chall
    rows[:, 5] = (d > 0).astype(np.float64)  # worse
    rows[:, 6], rows[:, 7] = d, d * d
    rows[:, 8] = (d < 0).astype(np.float64)  # better
    idx = np.arange(n)
    rows[idx, _HEAD + np.searchsorted(ABS_EDGES_S, a_champ, side="right") - 1] = 1.0
    rows[idx, _HEAD + _BINS + np.searchsorted(ABS_EDGES_S, a_chall, side="right") - 1] = 1.0
    return rows


def compare(
    model_name: str,
    champion: str,
    challenger: str,
    champion_s: Sequence[float] | Array,
    challenger_s: Sequence[float] | Array,
    actual_s: Sequence[float] | Array,
) -> ChampionChallenger:
    """The paired comparison of two versions' predictions of the same orders.

    >>> c = compare("eta", "1", "2", [100.0, 200.0, 300.0], [110.0, 190.0, 290.0],
    ...             [100.0, 180.0, 280.0])
    >>> c.orders, c.champion_mae_s, c.challenger_mae_s, c.mean_abs_error_diff_s
    (3, 13.333333333333334, 10.0, -3.3333333333333335)
    >>> c.challenger_better, c.challenger_worse
    (2, 1)
    """
    rows = _rows(
        np.asarray(champion_s, dtype=np.float64),
        np.asarray(challenger_s, dtype=np.float64),
        np.asarray(actual_s, dtype=np.float64),
    )
    sums: Array = rows.sum(axis=0)
    return _from_sums(model_name, champion, challenger, sums, None)


class PairedWindows:
    """The paired sums per (model, champion version, challenger version) in event-time rings,
    by delivery time, over every market and per market; ``stats`` reads any window."""

    def __init__(self) -> None:
        self.groups: dict[tuple[str, str, str, str], WindowRings] = {}
        self.until_ms: int | None = None
        self.late = 0

    def add(self, pairs: Sequence[PairedJoined]) -> None:
        if not pairs:
            return
        pairing = [(p.model_name, p.champion_version, p.challenger_version) for p in pairs]
        keys = [(*k, ALL_MARKETS) for k in pairing]
        keys += [(*k, p.market_id) for k, p in zip(pairing, pairs, strict=True)]
        ts = np.fromiter((p.delivered_ms for p in pairs), dtype=np.int64, count=len(pairs))
        rows = _rows(
            np.fromiter((p.champion_s for p in pairs), dtype=np.float64, count=len(pairs)),
            np.fromiter((p.challenger_s for p in pairs), dtype=np.float64, count=len(pairs)),
            np.fromiter((p.actual_s for p in pairs), dtype=np.float64, count=len(pairs)),
        )
        ts, rows = np.concatenate([ts, ts]), np.concatenate([rows, rows])  # all, then by market
        for key in set(keys):
            mask = np.array([k == key for k in keys])
            ring = self.groups.get(key)
            if ring is None:
                ring = self.groups[key] = WindowRings.of_width(_WIDTH)
            late = ring.add(ts[mask], rows[mask])
            if key[3] == ALL_MARKETS:  # each pair is counted late once, by the pooled rings
                self.late += late
        newest = int(ts.max())
        self.until_ms = newest if self.until_ms is None else max(self.until_ms, newest)

    def stats(self, window: str) -> list[ChampionChallenger]:
        """Each pairing's comparison over ``window`` (15m, 1h, 24h) ending at ``until_ms``:
        over every market (``ALL_MARKETS``, first) and then per market."""
        if self.until_ms is None:
            return []
        out = []
        for (name, champion, challenger, market), ring in sorted(self.groups.items()):
            sums = ring.window(self.until_ms, window)
            if sums[0] > 0:
                span = WINDOWS[window]
                out.append(_from_sums(name, champion, challenger, sums, span, market))
        return out

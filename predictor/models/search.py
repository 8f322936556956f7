"""Choose the objective and a few tree settings by the MAE users read, on the time split.

ETAs are judged by their mean absolute error in seconds, so ``eta train`` tries L1, Huber and
L2 with the default trees, then two leaf/learning-rate variants of the best one, and keeps the
candidate with the lowest MAE on the *stopping rows* (the latest ``STOP_FRACTION`` of the
training rows, held out of every fit). The validation rows, later still, take no part in the
choice, so the figures reported for the winner stay honest out-of-time figures; every
candidate's validation MAE is shown beside its selection MAE all the same.

On a large training set the candidates are fitted on its latest ``SEARCH_ROWS`` rows only and
the winner is then fitted on all of them, so the search costs about as much as one full fit
whatever the size (measurements in ``docs/models.md``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from predictor.models.dataset import Split
from predictor.models.training import Objective, TrainConfig, TrainResult, train_model

__all__ = [
    "SEARCH_OBJECTIVES",
    "SEARCH_ROWS",
    "SEARCH_TREES",
    "Candidate",
    "SearchResult",
    "search_model",
]

SEARCH_ROWS = 20_000
"""Candidates are fitted on at most this many of the latest training rows."""
SEARCH_OBJECTIVES: tuple[Objective, ...] = ("l1", "huber", "l2")
"""The objectives compared first, at the default tree settings."""
SEARCH_TREES: tuple[tuple[int, float], ...] = ((63, 0.1), (15, 0.2))
"""(num_leaves, learning_rate) tried next on the best objective: deeper trees, and shallower
trees with a larger step (cheaper to serve)."""


@dataclass(frozen=True)
class Candidate:
    """One configuration tried and how it did."""

    config: TrainConfig
    result: TrainResult

    @property
    def label(self) -> str:
        """``huber, 31 leaves, lr 0.1``.

        >>> from predictor.models.training import TrainConfig
        >>> Candidate(TrainConfig(objective="l1"), None).label
        'l1, 31 leaves, lr 0.1'
        """
        c = self.config
        return f"{c.objective}, {c.num_leaves} leaves, lr {c.learning_rate:g}"


@dataclass(frozen=True)
class SearchResult:
    best: Candidate
    """The winner, fitted on every training row."""
    tried: list[Candidate]
    searched_rows: int
    """Training rows the candidates were fitted on."""


def _latest(split: Split, rows: int) -> Split:
    """The split with only its latest ``rows`` training rows (validation unchanged)."""
    if split.y_train.size <= rows:
        return split
    return replace(split, x_train=split.x_train[-rows:], y_train=split.y_train[-rows:])


def search_model(
    split: Split,
    dtypes: dict[str, str],
    base: TrainConfig | None = None,
    on_candidate: Callable[[TrainConfig], Callable[[int, float], None] | None] | None = None,
) -> SearchResult:
    """Train every candidate on the same split; the best is the lowest stopping-rows MAE."""
    base = base or TrainConfig()
    tried: list[Candidate] = []
    sample = _latest(split, SEARCH_ROWS)

    def fit(config: TrainConfig) -> Candidate:
        progress = on_candidate(config) if on_candidate is not None else None
        candidate = Candidate(config, train_model(sample, dtypes, config, progress))
        tried.append(candidate)
        return candidate

    def score(c: Candidate) -> float:
        return c.result.stop_mae_s

    first = min((fit(replace(base, objective=o)) for o in SEARCH_OBJECTIVES), key=score)
    for leaves, rate in SEARCH_TREES:
        fit(replace(first.config, num_leaves=leaves, learning_rate=rate))
    best = min(tried, key=score)
    if sample is not split:
        progress = on_candidate(best.config) if on_candidate is not None else None
        best = Candidate(best.config, train_model(split, dtypes, best.config, progress))
    return SearchResult(best=best, tried=tried, searched_rows=int(sample.y_train.size))

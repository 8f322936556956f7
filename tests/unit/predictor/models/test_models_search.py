"""``eta train --objective auto``: the candidates, the choice by stopping-rows MAE, the refit."""

from __future__ import annotations

import pytest

from predictor.models import search
from predictor.models.search import SEARCH_OBJECTIVES, SEARCH_TREES, search_model
from predictor.models.workflow import feature_dtypes
from tests.unit._training_data import SMALL, small_split


def test_every_objective_then_two_tree_settings_of_the_best_and_the_lowest_mae_wins() -> None:
    split = small_split(3000)
    seen: list[str] = []
    found = search_model(split, feature_dtypes(), SMALL, lambda c: seen.append(c.objective))
    labels = [c.config.objective for c in found.tried]
    assert labels[:3] == list(SEARCH_OBJECTIVES)
    first = min(found.tried[:3], key=lambda c: c.result.stop_mae_s)
    trees = [(c.config.num_leaves, c.config.learning_rate) for c in found.tried[3:]]
    assert trees == list(SEARCH_TREES)
    assert all(c.config.objective == first.config.objective for c in found.tried[3:])
    assert found.best.result.stop_mae_s == min(c.result.stop_mae_s for c in found.tried)
    assert found.best is found.tried[[c.config for c in found.tried].index(found.best.config)]
    assert found.searched_rows == split.y_train.size  # small: no sample, no refit
    assert seen == labels


def test_a_large_set_is_searched_on_its_latest_rows_and_the_winner_refitted_on_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(search, "SEARCH_ROWS", 1000)
    split = small_split(3000)
    calls: list[str] = []
    found = search_model(split, feature_dtypes(), SMALL, lambda c: calls.append(c.objective))
    assert found.searched_rows == 1000 < split.y_train.size
    assert len(calls) == len(SEARCH_OBJECTIVES) + len(SEARCH_TREES) + 1  # the refit
    assert found.best not in found.tried  # refitted: a new fit of the chosen config
    assert found.best.config in [c.config for c in found.tried]
    assert found.best.result.train_predictions.size == split.y_train.size

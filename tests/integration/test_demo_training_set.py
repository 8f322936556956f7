"""The demo's training set: every feature computed from data (issue 17.3), no service needed."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from predictor.demo.plan import DemoConfig, history_end, prepare_steps
from stream_features.definitions import BATCH_FEATURES, feature_names

pytestmark = [pytest.mark.integration]


def test_no_feature_column_of_the_demo_training_set_is_constant(tmp_path: Path) -> None:
    config = DemoConfig(out_dir=tmp_path, history_hours=1.0, stores=80, rate=5.0)
    # a history ending just after midnight UTC: the case that left every batch feature at its
    # default, since the batch tables its rows see were built before any of it
    end = history_end(datetime(2026, 3, 4, 0, 50, tzinfo=UTC), config)
    steps = {s.key: s for s in prepare_steps(config, end)}
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETA_")}
    for key in ("history", "training-set"):
        run = subprocess.run(steps[key].argv, env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    frame = pl.read_parquet(tmp_path / "training_set.parquet")
    assert frame.height > 1000
    # a history of hours lies in one weekday and an hour or two of the clock: the calendar
    # features vary only over days (they are exempt from drift alerts for the same reason)
    calendar = {"order__hour_of_day", "order__day_of_week"}
    names = [n for n in feature_names() if n not in calendar]
    constant = [n for n in names if frame[n].drop_nans().n_unique() <= 1]
    assert constant == []
    # the batch features are looked up, not defaulted: the store median is there for most rows
    for feature in BATCH_FEATURES:
        assert frame[feature.name].is_nan().mean() < 0.05, feature.name  # type: ignore[operator]  # polars types mean() as any scalar; a float column's is a float

"""Guarded promotion on synthetic joined shadow pairs: refused without evidence, kept in history."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from predictor.cli import app
from predictor.models.guard import decide, decisions
from predictor.models.registry import Registry
from predictor.monitoring.join import PairedJoined
from predictor.monitoring.recording import JoinedLog, paired_frame
from tests.unit._training_data import write_small_artifact

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
T0_MS = int(T0.timestamp() * 1000)


def pairs(n: int, champion_sd: float, challenger_sd: float, challenger: str = "2", seed: int = 1):
    rng = np.random.default_rng(seed)
    actual = rng.uniform(600, 3600, n)
    champ = actual + rng.normal(0, champion_sd, n)
    chall = actual + rng.normal(0, challenger_sd, n)
    return [
        PairedJoined(
            order_id=f"o{i}",
            model_name="eta",
            champion_version="1",
            challenger_version=challenger,
            challenger_stage="staging",
            market_id="m1",
            created_ms=T0_MS + i * 1000,
            delivered_ms=T0_MS + i * 1000 + int(actual[i] * 1000),
            champion_s=float(max(champ[i], 0.0)),
            challenger_s=float(max(chall[i], 0.0)),
        )
        for i in range(n)
    ]


def guard(rows: list[PairedJoined], min_orders: int = 500, challenger: str = "2"):
    return decide(
        paired_frame(rows),
        name="eta",
        stage="staging",
        champion="1",
        challenger=challenger,
        min_orders=min_orders,
    )


def test_a_clearly_better_challenger_is_promoted() -> None:
    decision = guard(pairs(800, 400, 200))
    assert decision.outcome == "promoted", decision.reason
    assert decision.evidence["orders"] == 800
    assert decision.evidence["diff_ci_high_s"] < 0
    assert "beats 1 on 800 orders" in decision.reason


def test_a_worse_or_equal_challenger_is_refused_with_the_numbers() -> None:
    worse = guard(pairs(800, 200, 400))
    assert worse.outcome == "refused"
    assert "CI's upper bound must be below 0" in worse.reason
    assert worse.evidence["mean_abs_error_diff_s"] > 0

    same = guard(pairs(800, 300, 300))  # no difference: the CI straddles 0
    assert same.outcome == "refused"
    assert same.evidence["diff_ci_low_s"] < 0 < same.evidence["diff_ci_high_s"]


def test_too_few_orders_is_refused_however_good() -> None:
    decision = guard(pairs(100, 400, 100), min_orders=500)
    assert decision.outcome == "refused"
    assert "only 100 delivered orders" in decision.reason and "500" in decision.reason


def test_only_pairs_of_exactly_these_two_versions_count() -> None:
    rows = pairs(800, 400, 200, challenger="3")  # a previous challenger's evidence
    decision = guard(rows, challenger="2")
    assert decision.outcome == "refused" and decision.evidence["orders"] == 0


def test_an_order_both_paths_served_counts_once_with_the_streams_pair() -> None:
    """The API served 300 of the stream's 400 orders too, with a worse champion answer: the
    guard sees 400 orders, not 700, and the stream's pairs."""
    streamed = pairs(400, 400, 200)
    online = [replace(p, mode="online", champion_s=p.champion_s + 5000) for p in streamed[:300]]
    decision = guard([*online, *streamed], min_orders=500)
    assert decision.outcome == "refused" and decision.evidence["orders"] == 400
    alone = guard(streamed, min_orders=100)
    both = guard([*online, *streamed], min_orders=100)
    assert both.evidence == alone.evidence  # the online copies changed nothing


@pytest.mark.parametrize(
    ("champion", "challenger", "why"),
    [(None, "2", "production points at no version"), ("1", None, "points at no version"),
     ("1", "1", "already production")],
)  # fmt: skip
def test_stages_that_cannot_be_compared_are_refused(
    champion: str | None, challenger: str | None, why: str
) -> None:
    decision = decide(
        paired_frame([]),
        name="eta",
        stage="staging",
        champion=champion,
        challenger=challenger,
        min_orders=1,
    )
    assert decision.outcome == "refused" and why in decision.reason


def test_the_command_refuses_or_promotes_and_keeps_every_decision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    artifact = write_small_artifact(tmp_path / "a").artifact_dir
    registry = Registry(tmp_path / "models")
    for _ in range(3):
        registry.register(artifact)
    registry.promote("eta", "1", "production")
    registry.promote("eta", "2", "staging")
    monitor = tmp_path / "monitor"
    log = JoinedLog(monitor, 100_000, "shadow", paired_frame)
    log.append(pairs(600, 200, 400, challenger="2"))  # 2 is worse
    log.append(pairs(600, 400, 200, challenger="3", seed=2))  # 3 is better
    log.flush()
    monkeypatch.setenv("ETA_REGISTRY_DIR", str(registry.root))
    monkeypatch.setenv("ETA_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("ETA_REDIS_URL", raising=False)
    runner = CliRunner()

    refused = runner.invoke(app, ["models", "promote-if-better", "--stage", "staging"])
    assert refused.exit_code == 2, refused.output
    assert "refused" in refused.output
    assert registry.aliases("eta")["production"] == "1"

    registry.promote("eta", "3", "staging")
    promoted = runner.invoke(app, ["models", "promote-if-better", "--stage", "staging"])
    assert promoted.exit_code == 0, promoted.output
    assert registry.aliases("eta")["production"] == "3"

    kept = decisions(registry, "eta")
    assert [(d.challenger_version, d.outcome) for d in kept] == [
        ("2", "refused"),
        ("3", "promoted"),
    ]
    assert kept[1].evidence["orders"] == 600
    assert registry.history("eta", "production")[-1].to_version == "3"

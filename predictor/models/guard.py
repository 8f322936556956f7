"""Guarded promotion: the challenger replaces the champion only when live traffic says so.

The evidence is the monitor's recorded shadow pairs (``monitor/shadow/``: each delivered order
the champion served and the challenger scored in shadow). ``decide`` takes the pairs of the
two versions the stages point at now, and promotes only when there are at least
``min_orders`` of them and the 95 % CI of the mean of ``|challenger error| - |champion error|``
lies entirely below 0 (the challenger is better, not just not worse). Every decision, promoted
or refused, is appended to ``<registry>/<name>/decisions.jsonl`` with its numbers
(``record_decision``, through ``Registry.append_decision``); a promotion is also a stage move
in ``history.jsonl`` as any other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import polars as pl

from predictor.models.registry import Registry
from predictor.monitoring.messages import ChampionChallenger
from predictor.monitoring.paired import compare

__all__ = ["Decision", "decide", "decisions", "record_decision"]


@dataclass(frozen=True)
class Decision:
    """What the guard decided about ``challenger`` against ``champion``, and why."""

    name: str
    stage: str
    champion_version: str | None
    challenger_version: str | None
    outcome: Literal["promoted", "refused"]
    reason: str
    min_orders: int
    evidence: dict[str, Any] = field(default_factory=dict)
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    trigger: str = "promote-if-better"


def _refuse(base: dict[str, Any], reason: str, evidence: dict[str, Any] | None = None) -> Decision:
    return Decision(**base, outcome="refused", reason=reason, evidence=evidence or {})


def decide(
    pairs: pl.DataFrame,
    *,
    name: str,
    stage: str,
    champion: str | None,
    challenger: str | None,
    min_orders: int,
) -> Decision:
    """Promote ``challenger`` (the version at ``stage``) over ``champion`` (at production)?

    ``pairs`` is what ``recording.read_paired`` returns; only the rows of exactly these two
    versions count (a pair scored by an earlier challenger says nothing of this one), and each
    order once: an order the stream and the API both served is one order of evidence (the
    stream's pair), so ``min_orders`` counts orders and the paired test independent ones.
    """
    base: dict[str, Any] = dict(
        name=name,
        stage=stage,
        champion_version=champion,
        challenger_version=challenger,
        min_orders=min_orders,
    )
    if challenger is None:
        return _refuse(base, f"{name}@{stage} points at no version: nothing to promote")
    if champion is None:
        return _refuse(base, f"{name}@production points at no version: nothing to compare with")
    if challenger == champion:
        return _refuse(base, f"{name}@{stage} is already production ({champion})")
    rows = pairs.filter(
        (pl.col("model_name") == name)
        & (pl.col("champion_version") == champion)
        & (pl.col("challenger_version") == challenger)
    )
    if "mode" in rows.columns:  # one pair an order: the stream's where the API served it too
        order = rows.with_row_index("_at").sort(["mode", "_at"], descending=[True, False])
        rows = order.unique("order_id", keep="first").sort("_at").drop("_at")
    result: ChampionChallenger = compare(
        name,
        champion,
        challenger,
        rows["champion_duration_s"].to_numpy(),
        rows["challenger_duration_s"].to_numpy(),
        rows["actual_duration_s"].to_numpy(),
    )
    evidence = result.model_dump(mode="json", exclude={"schema_version", "window_s"})
    n = result.orders
    if n < min_orders:
        return _refuse(
            base,
            f"only {n} delivered orders were scored by both {champion} and {challenger} "
            f"(ETA_PROMOTE_MIN_ORDERS is {min_orders}); keep the shadow on and try again",
            evidence,
        )
    assert result.mean_abs_error_diff_s is not None and result.diff_ci_high_s is not None
    numbers = (
        f"on {n} orders: MAE {result.champion_mae_s:.1f} s ({champion}) against "
        f"{result.challenger_mae_s:.1f} s ({challenger}); mean |error| difference "
        f"{result.mean_abs_error_diff_s:+.1f} s, 95% CI [{result.diff_ci_low_s:+.1f}, "
        f"{result.diff_ci_high_s:+.1f}] s; challenger closer on {result.challenger_better}, "
        f"champion on {result.challenger_worse}"
    )
    if result.diff_ci_high_s >= 0:
        return _refuse(
            base,
            f"{challenger} is not shown better than {champion} {numbers}: the CI's upper bound "
            "must be below 0",
            evidence,
        )
    return Decision(
        **base,
        outcome="promoted",
        reason=f"{challenger} beats {champion} {numbers}",
        evidence=evidence,
    )


def record_decision(registry: Registry, decision: Decision) -> None:
    """Keep ``decision`` with its evidence in the registry (``decisions.jsonl``)."""
    registry.append_decision(decision.name, asdict(decision))


def decisions(registry: Registry, name: str) -> list[Decision]:
    """Every decision kept for ``name``, oldest first."""
    return [Decision(**record) for record in registry.decisions(name)]

"""Global feature importance of the model versions in use, and how it moved between them.

The report's answer to "what does this model lean on, and did the retrained one lean on the
same?": LightGBM's gain importance (the loss reduction of every split on a feature, summed over
the point model's trees) from each version's artifact in the registry, as a share of the
version's total gain. Shares, not raw gains, so that versions trained on different row counts
or numbers of trees compare. The versions in use are those the recorded pairs and summaries
name; a version whose artifact cannot be read is listed without importance, never guessed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import lightgbm as lgb
import numpy as np
import polars as pl

from predictor.models.registry import Registry, version_key
from predictor.monitoring.messages import MonitorSummary
from stream_features.errors import EtaError

__all__ = ["Importance", "gain_shares", "importance_by_version", "moves", "versions_in_use"]

log = logging.getLogger(__name__)

Importance = Mapping[str, Mapping[str, float] | None]
"""'name:version' (in version order) -> feature -> share of the total gain; None: unreadable."""


def gain_shares(booster: lgb.Booster, names: Sequence[str]) -> dict[str, float]:
    """Each feature's share of the booster's total split gain (all zero for a tree-less one)."""
    gains = np.asarray(booster.feature_importance(importance_type="gain"), dtype=np.float64)
    total = float(gains.sum())
    return {n: float(g / total) if total > 0 else 0.0 for n, g in zip(names, gains, strict=True)}


def versions_in_use(
    joined: pl.DataFrame, summaries: Sequence[MonitorSummary]
) -> list[tuple[str, str]]:
    """(model name, version) of every version the recorded pairs or summaries name, by name
    and then version order (numeric versions numerically).

    >>> frame = pl.DataFrame({"model_name": ["eta", "eta"], "model_version": ["10", "9"]})
    >>> versions_in_use(frame, [])
    [('eta', '9'), ('eta', '10')]
    """
    found: set[tuple[str, str]] = set()
    if not joined.is_empty():
        found |= set(joined.select("model_name", "model_version").unique().iter_rows())
    for s in summaries:
        found |= {(d.model_name, d.model_version) for d in s.drift}
    return sorted(found, key=lambda nv: (nv[0], version_key(nv[1])))


def importance_by_version(
    registry: Registry, versions: Sequence[tuple[str, str]]
) -> dict[str, dict[str, float] | None]:
    """Gain shares of each version's point model, read from the registry (None when its
    artifact is missing or unreadable: the report says so)."""
    out: dict[str, dict[str, float] | None] = {}
    for name, version in versions:
        try:
            model = registry.load(name, version)
        except EtaError as exc:
            log.warning("no importance for %s:%s: %s", name, version, exc)
            out[f"{name}:{version}"] = None
            continue
        out[f"{name}:{version}"] = gain_shares(model.booster, model.feature_names)
    return out


def moves(importance: Importance, top: int = 10) -> list[tuple[str, list[float | None]]]:
    """The features worth showing (the ``top`` of any version, by share) with their share in
    each version, ordered by their largest share.

    >>> moves({"eta:1": {"a": 0.7, "b": 0.3}, "eta:2": {"a": 0.4, "b": 0.6}}, top=1)
    [('a', [0.7, 0.4]), ('b', [0.3, 0.6])]
    """
    readable = [v for v in importance.values() if v]
    chosen: set[str] = set()
    for shares in readable:
        chosen |= set(sorted(shares, key=lambda f: -shares[f])[:top])
    rows = [(f, [None if v is None else v.get(f) for v in importance.values()]) for f in chosen]
    return sorted(rows, key=lambda row: (-max((s or 0.0) for s in row[1]), row[0]))

"""Live inputs and outputs of each model version against the reference in its artifact.

For every model version seen on the predictions topic the monitor keeps, per event-time
bucket of the order's ``created_at``, the count of predictions in each of the reference's bins
(numeric deciles or categorical codes, plus a bin for missing) for the prediction itself and,
when predictions carry their features (``ETA_STREAM_INCLUDE_FEATURES=true``), for every
feature; the share of predictions whose store or market had no state (no freshness: the
streaming features were defaults); and a histogram of feature freshness. PSI is computed from
these counts with the artifact's own bins, exactly as ``reference.psi`` computes it from values.
Without features, only the predictions' PSI is available (and the summary says so:
``with_features`` is 0).

A feature that describes a store or a market (``entity_of``) gets a PSI only when the window
holds at least ``min_entities`` *states* behind its values, a state being one entity in one
hour of event time: within an hour one market's value is one state watched over time, not a
fresh draw per order, so four markets in 15 minutes give four draws however many orders they
serve, and their PSI against hours of training data measures where those four markets stand
now, not drift (1.5-5 in 15 minutes of a steady marketplace). Two markets over a day give 48
states and keep their PSI. The summary keeps the count (``entities``) beside a missing PSI.

Any column (the prediction or a feature) gets a PSI only when the window holds at least
``min_samples`` values of it (``samples``): over ~50 predictions sampling noise alone gives PSI
0.3-2 on a distribution that has not moved (a decile bin left empty adds ~0.7 by itself).

The window a version is judged over (``covered_s``) starts no earlier than ``settle_s`` of
event time after the first prediction the monitor saw of any version: a stream that has just
started still has windows filling (60-minute counts, outstanding orders), which the training
rows never saw, so its first orders are counted and shown but never alerted on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from predictor.models.reference import Reference
from predictor.monitoring.messages import FeatureDrift, ModelDrift
from predictor.monitoring.rolling import (
    ABS_EDGES_S,
    FINE_BUCKET_S,
    WINDOWS,
    WindowRings,
    hist_quantile,
)
from stream_features.contract import DeliveryPrediction, to_ms
from stream_features.definitions import Entity, entity_of

__all__ = [
    "PREDICTION",
    "DriftWindows",
    "ModelReference",
    "ReferenceLoader",
    "bin_index",
    "psi_from_counts",
]

Array = npt.NDArray[np.float64]
PREDICTION = "prediction"
"""The column name the prediction's own distribution is kept under."""
_EPS = 1e-4  # as in reference.psi: an empty bin's share floor


def bin_index(ref: Reference, values: Array) -> npt.NDArray[np.int64]:
    """The reference bin of each value; ``len(ref["shares"])`` for a missing one.

    >>> ref = Reference(kind="numeric", edges=[1.0, 2.0], shares=[.3, .3, .4],
    ...                 missing_share=0.0, min=0.0, max=3.0)
    >>> bin_index(ref, np.array([0.5, 1.0, 1.5, 9.0, np.nan])).tolist()
    [0, 0, 1, 2, 3]
    """
    edges = np.asarray(ref["edges"], dtype=np.float64)
    finite = np.isfinite(values)
    safe = np.where(finite, values, 0.0)
    if ref["kind"] == "numeric":
        idx = np.searchsorted(edges, safe, side="left")
    elif edges.size == 0:
        idx = np.zeros(values.size, dtype=np.int64)
    else:
        pos = np.searchsorted(edges, safe)
        known = (pos < edges.size) & (edges[np.minimum(pos, edges.size - 1)] == safe)
        idx = np.where(known, pos, edges.size)
    return np.where(finite, idx, len(ref["shares"])).astype(np.int64)


def psi_from_counts(ref: Reference, counts: Array) -> float | None:
    """PSI of binned counts (``bin_index`` layout, missing last) against the reference.

    >>> ref = Reference(kind="numeric", edges=[1.0], shares=[0.5, 0.5],
    ...                 missing_share=0.0, min=0.0, max=2.0)
    >>> psi_from_counts(ref, np.array([50.0, 50.0, 0.0]))
    0.0
    >>> round(psi_from_counts(ref, np.array([90.0, 10.0, 0.0])), 3)
    0.879
    """
    total = float(counts.sum())
    if total <= 0:
        return None
    ref_missing = float(ref["missing_share"])
    expected = np.array([*(s * (1.0 - ref_missing) for s in ref["shares"]), ref_missing])
    actual = counts / total
    expected, actual = np.maximum(expected, _EPS), np.maximum(actual, _EPS)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


@dataclass(frozen=True)
class ModelReference:
    """A model version's reference distributions, from its artifact metadata."""

    columns: dict[str, Reference]
    """The features by name, and the prediction under ``PREDICTION``."""

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> ModelReference:
        reference = metadata.get("reference") or {}
        columns: dict[str, Reference] = dict(reference.get("features") or {})
        if "prediction" in reference:
            columns[PREDICTION] = reference["prediction"]
        return cls(columns)


ReferenceLoader = Callable[[str, str], ModelReference | None]
"""(model name, version) to its reference, or None when the artifact cannot be read."""

_HEAD = 3  # predictions, with features, without freshness (no entity state)
MIN_ENTITIES = 10
"""Fewest entity states (distinct store or market, hour) behind such a feature for its PSI."""
MIN_SAMPLES = 200
"""Fewest values of a column in the window for its PSI: with about ten bins a steady
distribution's PSI over n values is about 10/n, and a bin left empty costs ~0.7."""
SETTLE_S = 3600
"""Event time after the first prediction seen before a window is judged: the longest streaming
window (60 minutes), for a stream that starts empty."""
_STATE_MS = 3_600_000
"""An entity's state counts once per hour of event time: its windowed features span at most
60 minutes, so values an hour apart share no event."""


class _ModelDrift:
    """The rings of one model version (or just counts, when its reference is unavailable)."""

    def __init__(
        self,
        reference: ModelReference | None,
        min_entities: int = MIN_ENTITIES,
        min_samples: int = MIN_SAMPLES,
    ) -> None:
        self.reference = reference
        self.min_entities = min_entities
        self.min_samples = min_samples
        self.last_seen: dict[Entity, dict[tuple[str, int], int]] = {
            "store_id": {},
            "market_id": {},
        }
        """Per (entity, hour of event time), its newest order (event ms): the count of states
        in a window is exact, and memory follows entities × hours, not the stream."""
        self.offsets: dict[str, int] = {}
        width = _HEAD + ABS_EDGES_S.size
        for name, ref in (reference.columns if reference else {}).items():
            self.offsets[name] = width
            width += len(ref["shares"]) + 1
        self.width = width
        names = [n for n in (reference.columns if reference else {}) if n != PREDICTION]
        self.columns = {name: j for j, name in enumerate(names)}
        self.rings = WindowRings.of_width(width)
        self.until_ms: int | None = None
        self.first_ms: int | None = None

    def _feature_table(self, features: list[dict[str, float]]) -> Array:
        """One row per features dict, one column per referenced feature (NaN when absent)."""
        columns, width = self.columns, len(self.columns)
        rows = []
        for values in features:
            row = [np.nan] * width
            for name, value in values.items():
                j = columns.get(name)
                if j is not None:
                    row[j] = value
            rows.append(row)
        return np.array(rows, dtype=np.float64).reshape(len(rows), width)

    def add(self, preds: Sequence[DeliveryPrediction]) -> int:
        n = len(preds)
        rows = np.zeros((n, self.width))
        at = np.arange(n)
        rows[:, 0] = 1.0
        has = np.array([p.features is not None for p in preds])
        rows[:, 1] = has
        fresh = np.array(
            [np.nan if p.feature_freshness_s is None else p.feature_freshness_s for p in preds]
        )
        known = np.isfinite(fresh)
        rows[:, 2] = ~known
        fbins = np.searchsorted(ABS_EDGES_S, np.where(known, fresh, 0.0), side="right") - 1
        rows[at[known], _HEAD + fbins[known]] = 1.0
        if self.reference is not None:
            with_features = at[has]
            table = self._feature_table([p.features for p in preds if p.features is not None])
            for name, ref in self.reference.columns.items():
                offset = self.offsets[name]
                if name == PREDICTION:
                    values = np.array([p.predicted_duration_s for p in preds])
                    rows[at, offset + bin_index(ref, values)] = 1.0
                elif with_features.size:
                    values = table[:, self.columns[name]]
                    rows[with_features, offset + bin_index(ref, values)] = 1.0
        ts = np.fromiter((to_ms(p.created_at) for p in preds), dtype=np.int64, count=n)
        stores, markets = self.last_seen["store_id"], self.last_seen["market_id"]
        for p, at_ms in zip(preds, ts.tolist(), strict=True):
            hour = at_ms // _STATE_MS
            for seen, key in ((stores, (p.store_id, hour)), (markets, (p.market_id, hour))):
                if seen.get(key, -1) < at_ms:
                    seen[key] = at_ms
        newest, oldest = int(ts.max()), int(ts.min())
        self.until_ms = newest if self.until_ms is None else max(self.until_ms, newest)
        self.first_ms = oldest if self.first_ms is None else min(self.first_ms, oldest)
        return self.rings.add(ts, rows)

    def summary(
        self, name: str, version: str, window: str, until_ms: int, settled_ms: int | None = None
    ) -> ModelDrift:
        """The window ending at ``until_ms``; it counts as covered from ``settled_ms`` on."""
        sums = self.rings.window(until_ms, window)
        n, with_features, no_state = int(sums[0]), int(sums[1]), float(sums[2])
        fresh = sums[_HEAD : _HEAD + ABS_EDGES_S.size]
        features: list[FeatureDrift] = []
        prediction_psi = None
        since_ms = until_ms - WINDOWS[window] * 1000
        entities = {
            kind: sum(since_ms < at_ms <= until_ms for at_ms in seen.values())
            for kind, seen in self.last_seen.items()
        }
        for column, ref in (self.reference.columns if self.reference else {}).items():
            offset = self.offsets[column]
            counts = sums[offset : offset + len(ref["shares"]) + 1]
            total = float(counts.sum())
            sampled = total >= self.min_samples
            if column == PREDICTION:
                prediction_psi = psi_from_counts(ref, counts) if sampled else None
                continue
            entity = entity_of(column)
            behind = None if entity is None else entities[entity]
            enough = sampled and (behind is None or behind >= self.min_entities)
            features.append(
                FeatureDrift(
                    feature=column,
                    psi=psi_from_counts(ref, counts) if enough else None,
                    samples=int(total),
                    entities=behind,
                    missing_share=float(counts[-1] / total) if total else None,
                    reference_missing_share=float(ref["missing_share"]),
                )
            )
        span_s = WINDOWS[window]
        start_ms = self.first_ms if self.first_ms is not None else until_ms
        if settled_ms is not None:
            start_ms = max(start_ms, settled_ms)
        covered_ms = until_ms - start_ms
        return ModelDrift(
            model_name=name,
            model_version=version,
            window_s=span_s,
            covered_s=max(0, min(span_s, covered_ms // 1000 + FINE_BUCKET_S)),
            predictions=n,
            min_samples=self.min_samples,
            with_features=with_features,
            reference="artifact" if self.reference else "unavailable",
            prediction_psi=prediction_psi,
            features=features,
            no_state_share=no_state / n if n else None,
            freshness_p50_s=hist_quantile(fresh, ABS_EDGES_S, 0.5),
            freshness_p90_s=hist_quantile(fresh, ABS_EDGES_S, 0.9),
        )


class DriftWindows:
    """Drift counts per model version; references come from ``references`` on first sight."""

    def __init__(
        self,
        references: ReferenceLoader,
        min_entities: int = MIN_ENTITIES,
        min_samples: int = MIN_SAMPLES,
        settle_s: float = SETTLE_S,
    ) -> None:
        self._references = references
        self.min_entities, self.min_samples = min_entities, min_samples
        self.settle_ms = int(settle_s * 1000)
        self.models: dict[tuple[str, str], _ModelDrift] = {}
        self.late = 0
        self.added = 0

    def add(self, preds: Sequence[DeliveryPrediction]) -> None:
        by_model: dict[tuple[str, str], list[DeliveryPrediction]] = {}
        for p in preds:
            by_model.setdefault((p.model_name, p.model_version), []).append(p)
        for key, group in by_model.items():
            state = self.models.get(key)
            if state is None:
                state = self.models[key] = _ModelDrift(
                    self._references(*key), self.min_entities, self.min_samples
                )
            self.late += state.add(group)
            self.added += len(group)

    @property
    def settled_ms(self) -> int | None:
        """Where judged windows may start: ``settle_s`` after the first prediction seen."""
        firsts = [m.first_ms for m in self.models.values() if m.first_ms is not None]
        return min(firsts) + self.settle_ms if firsts else None

    @property
    def until_ms(self) -> int | None:
        ends = [m.until_ms for m in self.models.values() if m.until_ms is not None]
        return max(ends) if ends else None

    def summaries(self, window: str) -> list[ModelDrift]:
        """Every model version with predictions in ``window``, which ends at the latest order
        of any version (so a version no longer served drops out)."""
        until = self.until_ms
        if until is None:
            return []
        if WINDOWS[window] == max(WINDOWS.values()):  # an entity gone for a day is forgotten
            horizon = until - WINDOWS[window] * 1000
            for m in self.models.values():
                for seen in m.last_seen.values():
                    for gone in [k for k, at_ms in seen.items() if at_ms <= horizon]:
                        del seen[gone]
        settled = self.settled_ms
        found = [m.summary(name, v, window, until, settled) for (name, v), m in self.models.items()]
        return [d for d in found if d.predictions]

"""Reference distributions stored with a model, and the PSI that compares live data to them.

A numeric column is cut at its training deciles (duplicates merged, so a count feature with
few distinct values gets fewer bins); the share of rows per bin and the share missing are kept.
A categorical column keeps the share of each code seen in training. Live data is binned with
the artifact's own edges, so drift is measured against what the model was trained on.
"""

from __future__ import annotations

from typing import Literal, TypedDict

import numpy as np
import numpy.typing as npt

__all__ = [
    "Reference",
    "bin_shares",
    "categorical_reference",
    "numeric_reference",
    "psi",
    "reference_for",
]

Array = npt.NDArray[np.float64]
_EPS = 1e-4
"""Floor for an empty bin's share in PSI, so one empty bin does not make it infinite."""


class Reference(TypedDict):
    kind: Literal["numeric", "categorical"]
    edges: list[float]
    """Numeric: inner bin edges; bin i holds (edges[i-1], edges[i]]. Categorical: the codes."""
    shares: list[float]
    """Numeric: one per bin (len(edges) + 1). Categorical: one per code, then 'other'."""
    missing_share: float
    min: float | None
    max: float | None


def numeric_reference(values: Array, n_bins: int = 10) -> Reference:
    """Decile edges of the non-missing values, the share in each bin and the share missing.

    >>> ref = numeric_reference(np.array([1.0, 2.0, 3.0, 4.0, np.nan]), n_bins=2)
    >>> ref["edges"], ref["shares"], ref["missing_share"]
    ([2.5], [0.5, 0.5], 0.2)
    """
    present = values[np.isfinite(values)]
    missing = (values.size - present.size) / values.size if values.size else 0.0
    if present.size == 0:
        return Reference(
            kind="numeric", edges=[], shares=[1.0], missing_share=missing, min=None, max=None
        )
    inner = np.unique(np.quantile(present, np.linspace(0, 1, n_bins + 1)[1:-1]))
    ref = Reference(
        kind="numeric",
        edges=[float(e) for e in inner],
        shares=[],
        missing_share=missing,
        min=float(present.min()),
        max=float(present.max()),
    )
    ref["shares"] = bin_shares(ref, values)[0]
    return ref


def categorical_reference(values: Array, max_codes: int = 50) -> Reference:
    """Shares of the most common codes (up to ``max_codes``) and of all others among the
    non-missing values, and the share missing.

    >>> ref = categorical_reference(np.array([3.0, 3.0, 7.0, np.nan]))
    >>> ref["edges"], [round(s, 3) for s in ref["shares"]], ref["missing_share"]
    ([3.0, 7.0], [0.667, 0.333, 0.0], 0.25)
    """
    present = values[np.isfinite(values)]
    missing = (values.size - present.size) / values.size if values.size else 0.0
    codes, counts = np.unique(present, return_counts=True)
    top = codes[np.argsort(-counts, kind="stable")][:max_codes]
    ref = Reference(
        kind="categorical",
        edges=sorted(float(c) for c in top),
        shares=[],
        missing_share=missing,
        min=None,
        max=None,
    )
    ref["shares"] = bin_shares(ref, values)[0]
    return ref


def reference_for(values: Array, dtype: str) -> Reference:
    return categorical_reference(values) if dtype == "category" else numeric_reference(values)


def bin_shares(ref: Reference, values: Array) -> tuple[list[float], float]:
    """Shares of the non-missing ``values`` in each of the reference's bins, and share missing.

    >>> ref = numeric_reference(np.arange(10.0), n_bins=2)
    >>> bin_shares(ref, np.array([0.0, 9.0, 9.0, np.nan]))
    ([0.3333333333333333, 0.6666666666666666], 0.25)
    """
    finite = np.isfinite(values)
    present = values[finite]
    missing = (values.size - present.size) / values.size if values.size else 0.0
    edges = np.asarray(ref["edges"], dtype=np.float64)
    if ref["kind"] == "numeric":
        counts = np.bincount(np.searchsorted(edges, present, side="left"), minlength=edges.size + 1)
    elif edges.size == 0:
        counts = np.array([present.size])
    else:
        idx = np.searchsorted(edges, present)
        known = (idx < edges.size) & (edges[np.minimum(idx, edges.size - 1)] == present)
        counts = np.bincount(np.where(known, idx, edges.size), minlength=edges.size + 1)
    total = counts.sum()
    shares = counts / total if total else np.zeros(counts.size)
    return [float(s) for s in shares], float(missing)


def psi(ref: Reference, values: Array) -> float:
    """Population stability index of ``values`` against the reference (missing is a bin).

    >>> ref = numeric_reference(np.random.default_rng(0).normal(0, 1, 5000))
    >>> psi(ref, np.random.default_rng(1).normal(0, 1, 5000)) < 0.02
    True
    >>> psi(ref, np.random.default_rng(1).normal(1, 1, 5000)) > 0.2
    True
    """
    live, live_missing = bin_shares(ref, values)
    present_ref = 1.0 - ref["missing_share"]
    expected = np.array([*(s * present_ref for s in ref["shares"]), ref["missing_share"]])
    actual = np.array([*(s * (1.0 - live_missing) for s in live), live_missing])
    expected, actual = np.maximum(expected, _EPS), np.maximum(actual, _EPS)
    return float(np.sum((actual - expected) * np.log(actual / expected)))

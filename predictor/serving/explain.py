"""Reasons behind an ETA: each input's contribution in seconds (LightGBM's ``pred_contrib``).

The contributions are the trees' SHAP values: the model's expected output (``bias_s``) plus
every input's contribution is exactly its raw output, which is the ETA unless the ETA was
clipped at zero. They are in seconds only for a model trained on seconds (every objective but
``log_l2``, whose contributions would be in log-seconds and are refused). Always scored by
LightGBM, whatever the serving backend (lleaves has no contributions): the two agree to 1e-6 s.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from predictor.errors import ExplainUnavailable

__all__ = ["TOP_REASONS", "explanations", "reason_text"]

TOP_REASONS = 5
Array = npt.NDArray[np.float64]


def reason_text(name: str, value: float, contribution_s: float) -> str:
    """One contribution as a line a person reads.

    >>> reason_text("store__delivery_duration_median__28d", 2410.0, 312.4)
    '+312 s from store__delivery_duration_median__28d = 2410'
    >>> reason_text("market__busy_ratio", float("nan"), -41.0)
    '-41 s from market__busy_ratio = missing'
    """
    shown = "missing" if math.isnan(value) else f"{value:.4g}"
    return f"{contribution_s:+.0f} s from {name} = {shown}"


def explanations(model: Any, values: Array) -> list[dict[str, Any]]:
    """Per row of ``values``, an ``Explanation``'s fields (bias, every contribution, the top
    five by size as text), in declaration order for the fast encoder."""
    booster = getattr(model, "booster", None)
    transform = getattr(model, "target_transform", None)
    if booster is None or transform != "identity":
        raise ExplainUnavailable(
            f"{model.name}:{model.version}",
            "its contributions are not in seconds (a log-target model)"
            if booster is not None
            else "it is not a LightGBM model",
        )
    names: list[str] = list(model.feature_names)
    contrib = np.asarray(booster.predict(values, pred_contrib=True), dtype=np.float64)
    order = np.argsort(-np.abs(contrib[:, :-1]), axis=1, kind="stable")[:, :TOP_REASONS]
    out = []
    for row, row_values, top in zip(contrib.tolist(), values.tolist(), order.tolist(), strict=True):
        out.append(
            {
                "bias_s": row[-1],
                "contributions_s": dict(zip(names, row[:-1], strict=True)),
                "top": [reason_text(names[j], row_values[j], row[j]) for j in top],
            }
        )
    return out

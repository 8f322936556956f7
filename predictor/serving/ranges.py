"""Score a batch with its ETA range: one rule for the stream, the HTTP API and the batch job.

A model with a range (``EtaModel.predict_range``) scores the point model and both bound models
over the same rows, each one vectorised call; any other model (a test's fake, an artifact
trained without a range) scores the point alone and its predictions carry no range.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["predict_with_range", "range_columns"]

Array = npt.NDArray[np.float64]


def predict_with_range(
    model: Any, values: Array, *, with_range: bool = True
) -> tuple[Array, Array | None]:
    """The point ETAs (n,) and the range (2, n: p10, p90), or None when the model has none
    (or ``with_range`` is off: the point alone, a third of the trees to score)."""
    scorer = getattr(model, "predict_range", None) if with_range else None
    if scorer is None:
        return np.asarray(model.predict(values), dtype=np.float64).reshape(-1), None
    point, bounds = scorer(values)
    return np.asarray(point, dtype=np.float64).reshape(-1), bounds


def range_columns(bounds: Array | None, n: int) -> tuple[list[float | None], list[float | None]]:
    """Each order's p10 and p90 as plain floats for the encoder; None where there is no range
    (a bound that is not finite leaves the order without one, never with half of one).

    >>> range_columns(np.array([[1.0, float("nan")], [3.0, 4.0]]), 2)
    ([1.0, None], [3.0, None])
    >>> range_columns(None, 2)
    ([None, None], [None, None])
    """
    if bounds is None:
        return [None] * n, [None] * n
    lows: list[float | None] = bounds[0].tolist()
    highs: list[float | None] = bounds[1].tolist()
    if not np.isfinite(bounds).all():
        for i, (low, high) in enumerate(zip(lows, highs, strict=True)):
            if not (math.isfinite(low or math.nan) and math.isfinite(high or math.nan)):
                lows[i] = highs[i] = None
    return lows, highs

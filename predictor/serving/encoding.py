"""Predictions to wire bytes, fast: the hot path skips pydantic but writes the same JSON.

``encode(DeliveryPrediction(...))`` costs about 5 µs a record; building the dict in declaration
order and handing it to orjson costs under 1 µs, which matters at tens of thousands of orders a
second. A unit test holds the two byte-for-byte equal, so the contract stays the one source.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import orjson

from stream_features.contract import SCHEMA_VERSION
from stream_features.wire_decode import AnyOrder

__all__ = ["encode_prediction", "finite_features"]

_OPTIONS = orjson.OPT_UTC_Z


def finite_features(names: list[str], values: npt.NDArray[np.float64]) -> list[dict[str, float]]:
    """Per row of ``values``, the model inputs that have a value; a missing (NaN) input is left
    out of the dict.

    JSON has no NaN, and the contract's ``features`` holds floats only, so absence means
    "missing" (as NaN means to the model). Rows without a NaN (most of them) are zipped whole.

    >>> finite_features(["a", "b"], np.array([[1.0, float("nan")], [2.0, 3.0]]))
    [{'a': 1.0}, {'a': 2.0, 'b': 3.0}]
    """
    complete = cast("list[bool]", (~np.isnan(values).any(axis=1)).tolist())
    return [
        dict(zip(names, row, strict=True))
        if whole
        else {n: v for n, v in zip(names, row, strict=True) if v == v}  # NaN != NaN
        for row, whole in zip(values.tolist(), complete, strict=True)
    ]


def encode_prediction(
    order: AnyOrder,
    predicted_duration_s: float,
    *,
    model_name: str,
    model_version: str,
    served_at: datetime,
    feature_freshness_s: float | None,
    features: dict[str, float] | None = None,
    mode: str = "streaming",
    p10_s: float | None = None,
    p90_s: float | None = None,
    explanation: dict[str, Any] | None = None,
) -> bytes:
    """One ``DeliveryPrediction`` as wire JSON; the duration must be finite and >= 0, and the
    range (``p10_s``, ``p90_s``: both or neither) must hold it. The order is either decoder's
    (a pydantic model or a ``wire_decode`` Struct). ``explanation`` is an ``Explanation``'s
    fields in declaration order (``predictor.serving.explain`` builds it)."""
    message: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "type": "DeliveryPrediction",
        "order_id": order.order_id,
        "store_id": order.store_id,
        "market_id": order.market_id,
        "created_at": order.created_at,
        "predicted_duration_s": predicted_duration_s,
    }
    if p10_s is not None:
        message["predicted_duration_p10_s"] = p10_s
        message["predicted_duration_p90_s"] = p90_s
    message |= {
        "predicted_delivery_at": order.created_at + timedelta(seconds=predicted_duration_s),
        "model_name": model_name,
        "model_version": model_version,
        "mode": mode,
        "served_at": served_at,
    }
    if feature_freshness_s is not None:
        message["feature_freshness_s"] = feature_freshness_s
    if features is not None:
        message["features"] = features
    if explanation is not None:
        message["explanation"] = explanation
    return orjson.dumps(message, option=_OPTIONS)

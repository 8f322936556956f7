"""Predictions to wire bytes, fast: the hot path skips pydantic but writes the same JSON; and
the one rule that turns a model's duration into a prediction (``answer``), which the stream,
the HTTP API and the batch job all follow.

``encode(DeliveryPrediction(...))`` costs about 5 µs a record; a msgspec Struct with the model's
fields in declaration order costs under 1 µs, which matters at tens of thousands of
orders a second. A unit test holds the two byte-for-byte equal, so the contract stays the one
source.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any, cast

import msgspec
import numpy as np
import numpy.typing as npt

from stream_features.contract import SCHEMA_VERSION, DeliveryPrediction
from stream_features.wire_decode import AnyOrder

__all__ = [
    "MAX_DURATION_S",
    "answer",
    "encode_prediction",
    "finite_features",
    "freshness",
    "usable",
]

MAX_DURATION_S = 365 * 86400.0
"""Beyond a year a prediction is a model fault, not an ETA."""

_Prediction = msgspec.defstruct(
    "_Prediction",
    [(name, object, None) for name in DeliveryPrediction.model_fields],
    omit_defaults=True,
    gc=False,
)
"""``DeliveryPrediction``'s fields in its declaration order, a None one left out as
``contract.encode`` leaves it out: msgspec encodes a Struct faster than a dict, and the
fields come from the model, so the two cannot drift apart."""
_encode = msgspec.json.Encoder().encode


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
    return _encode(
        _Prediction(  # positional, in declaration order: a third faster than by keyword
            SCHEMA_VERSION,
            "DeliveryPrediction",
            order.order_id,
            order.store_id,
            order.market_id,
            order.created_at,
            predicted_duration_s,
            p10_s,
            None if p10_s is None else p90_s,
            order.created_at + timedelta(seconds=predicted_duration_s),
            model_name,
            model_version,
            mode,
            served_at,
            feature_freshness_s,
            features,
            explanation,
        )
    )


def usable(duration: float) -> bool:
    """Whether a model's duration can be an ETA: finite and within ``MAX_DURATION_S`` (a
    negative one is clamped to 0 by ``answer``; anything else is the model's fault, and the
    order is dead-lettered, refused or left out instead).

    >>> usable(1800.0), usable(-5.0), usable(float("nan")), usable(2 * MAX_DURATION_S)
    (True, True, False, False)
    """
    return math.isfinite(duration) and duration <= MAX_DURATION_S


def freshness(age_s: float) -> float | None:
    """A row's feature age as the prediction states it: None without state yet (NaN), never
    negative (an order stamped before the newest event its entities applied).

    >>> freshness(float("nan")), freshness(-0.2), freshness(3.5)
    (None, 0.0, 3.5)
    """
    return None if math.isnan(age_s) else max(age_s, 0.0)


def answer(
    order: AnyOrder,
    duration: float,
    age_s: float,
    *,
    model_name: str,
    model_version: str,
    served_at: datetime,
    mode: str,
    p10_s: float | None = None,
    p90_s: float | None = None,
    features: dict[str, float] | None = None,
    explanation: dict[str, Any] | None = None,
) -> bytes | None:
    """The prediction for ``order`` from the model's ``duration`` and the row's feature age,
    or None when the duration is not ``usable``: the one rule of every serving path."""
    if not usable(duration):
        return None
    return encode_prediction(
        order,
        max(duration, 0.0),
        model_name=model_name,
        model_version=model_version,
        served_at=served_at,
        feature_freshness_s=freshness(age_s),
        features=features,
        mode=mode,
        p10_s=p10_s,
        p90_s=p90_s,
        explanation=explanation,
    )
